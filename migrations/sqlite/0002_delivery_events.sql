-- What happens after the provider accepts a message: its price, and the delivery events that
-- Twilio's status callbacks report (only those that moved the message: the history of its
-- status after `sent`). The same tables as migrations/postgres.

ALTER TABLE messages ADD COLUMN price_amount TEXT;
ALTER TABLE messages ADD COLUMN price_currency TEXT;

CREATE TABLE message_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'expired')
    ),
    error_code TEXT,
    error_message TEXT,
    price_amount TEXT,
    price_currency TEXT,
    received_at INTEGER NOT NULL,
    CHECK ((price_amount IS NULL) = (price_currency IS NULL))
);

CREATE INDEX message_events_by_message ON message_events (message_id, received_at);
