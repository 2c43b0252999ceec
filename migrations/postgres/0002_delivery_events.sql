-- What happens after the provider accepts a message: its price, and the delivery events that
-- Twilio's status callbacks report (only those that moved the message: the history of its
-- status after `sent`).

ALTER TABLE messages
    ADD COLUMN price_amount text,
    ADD COLUMN price_currency text,
    ADD CONSTRAINT messages_price_has_a_currency
        CHECK ((price_amount IS NULL) = (price_currency IS NULL));

CREATE TABLE message_events (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'expired')
    ),
    error_code text,
    error_message text,
    price_amount text,
    price_currency text,
    received_at timestamptz NOT NULL,
    CHECK ((price_amount IS NULL) = (price_currency IS NULL))
);

CREATE INDEX message_events_by_message ON message_events (message_id, received_at);
