-- Provider resilience: which provider made each attempt and accepted each message, status
-- lookups for messages whose callback never came, and deduplicated status callbacks. The same
-- columns as migrations/postgres.

ALTER TABLE message_attempts ADD COLUMN provider TEXT;
ALTER TABLE messages ADD COLUMN provider TEXT;
ALTER TABLE messages ADD COLUMN reconcile_after INTEGER;

CREATE INDEX messages_unconfirmed
    ON messages (provider, updated_at)
    WHERE status = 'sent';

ALTER TABLE message_events ADD COLUMN idempotency_token TEXT;
CREATE UNIQUE INDEX message_events_idempotency_token
    ON message_events (message_id, idempotency_token)
    WHERE idempotency_token IS NOT NULL;
