-- Provider resilience: which provider made each attempt and accepted each message, status
-- lookups for messages whose callback never came, and deduplicated status callbacks.

-- `twilio`, `vonage`, ...; NULL for what was recorded before providers were named.
ALTER TABLE message_attempts ADD COLUMN provider text;
ALTER TABLE messages
    ADD COLUMN provider text,
    -- A status lookup of this `sent` message waits until then (another instance holds it, or
    -- the last lookup found nothing final).
    ADD COLUMN reconcile_after timestamptz;

-- The reconciliation job walks the messages still `sent`, per provider, oldest first.
CREATE INDEX messages_unconfirmed
    ON messages (provider, updated_at)
    WHERE status = 'sent';

-- The provider's id for the report (Twilio's `I-Twilio-Idempotency-Token`): a report applied
-- once is not applied again.
ALTER TABLE message_events ADD COLUMN idempotency_token text;
CREATE UNIQUE INDEX message_events_idempotency_token
    ON message_events (message_id, idempotency_token)
    WHERE idempotency_token IS NOT NULL;
