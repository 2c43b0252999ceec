-- The message queue and two-factor verifications.
--
-- Counters are bigint so that every u32 the domain holds fits without a check on the way in.
-- Statuses are text with a CHECK rather than enums: adding a status is then one migration
-- that replaces a constraint, not an ALTER TYPE that cannot run in a transaction.

CREATE TABLE verifications (
    id uuid PRIMARY KEY,
    "to" text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    api_key text NOT NULL,
    status text NOT NULL CHECK (
        status IN ('pending', 'approved', 'canceled', 'max_attempts_reached', 'expired')
    ),
    check_count bigint NOT NULL CHECK (check_count >= 0),
    max_checks bigint NOT NULL CHECK (max_checks >= 0),
    send_count bigint NOT NULL CHECK (send_count >= 0),
    max_sends bigint NOT NULL CHECK (max_sends >= 0),
    expires_at timestamptz NOT NULL,
    last_sent_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A resend looks up the pending verification of a number for an API key.
CREATE INDEX verifications_pending_by_recipient
    ON verifications ("to", api_key, created_at DESC)
    WHERE status = 'pending';

CREATE TABLE verification_codes (
    id bigserial PRIMARY KEY,
    verification_id uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    -- HMAC-SHA256 of the code with the server's pepper; never the code.
    code_hash bytea NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX verification_codes_by_verification ON verification_codes (verification_id);

CREATE TABLE messages (
    id uuid PRIMARY KEY,
    "to" text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    template text,
    -- Emptied when a one-time code's message can no longer be sent.
    body text NOT NULL,
    segments bigint NOT NULL CHECK (segments >= 0),
    priority smallint NOT NULL,
    status text NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'expired')
    ),
    -- The API key's name, never the key.
    api_key text NOT NULL,
    idempotency_key text,
    verification_id uuid REFERENCES verifications (id) ON DELETE SET NULL,
    send_before timestamptz,
    provider_sid text,
    error_code text,
    error_message text,
    attempt_count bigint NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    next_attempt_at timestamptz NOT NULL,
    -- The lease of the dispatcher that claimed the message; set only while `sending`.
    locked_until timestamptz,
    claim_token uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK ((status = 'sending') = (locked_until IS NOT NULL AND claim_token IS NOT NULL))
);

CREATE UNIQUE INDEX messages_idempotency_key
    ON messages (api_key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Claiming walks this index in dispatch order and stops after the first due rows; it stays
-- small because finished messages leave it.
CREATE INDEX messages_claim_order
    ON messages (priority DESC, created_at)
    WHERE status IN ('queued', 'sending');

-- An idle dispatcher asks when the next queued message is due.
CREATE INDEX messages_next_due
    ON messages (next_attempt_at)
    WHERE status = 'queued';

-- Status callbacks find their message by the provider's id.
CREATE UNIQUE INDEX messages_provider_sid ON messages (provider_sid);

CREATE INDEX messages_by_verification
    ON messages (verification_id)
    WHERE verification_id IS NOT NULL;

-- Reports read ranges of creation time.
CREATE INDEX messages_created_at ON messages (created_at);

CREATE TABLE message_attempts (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number bigint NOT NULL CHECK (number >= 0),
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error')),
    http_status integer,
    error_code text,
    error_message text
);

CREATE INDEX message_attempts_by_message ON message_attempts (message_id, number);
