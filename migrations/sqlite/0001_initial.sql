-- The message queue and two-factor verifications, the same tables as migrations/postgres.
--
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): they compare and index as
-- numbers, and PostgreSQL's timestamptz has the same precision, so both stores read back the
-- same values. Ids and claim tokens are hyphenated UUID text, readable in the sqlite3 shell.

CREATE TABLE verifications (
    id TEXT PRIMARY KEY NOT NULL,
    "to" TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    api_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'approved', 'canceled', 'max_attempts_reached', 'expired')
    ),
    check_count INTEGER NOT NULL CHECK (check_count >= 0),
    max_checks INTEGER NOT NULL CHECK (max_checks >= 0),
    send_count INTEGER NOT NULL CHECK (send_count >= 0),
    max_sends INTEGER NOT NULL CHECK (max_sends >= 0),
    expires_at INTEGER NOT NULL,
    last_sent_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- A resend looks up the pending verification of a number for an API key.
CREATE INDEX verifications_pending_by_recipient
    ON verifications ("to", api_key, created_at DESC)
    WHERE status = 'pending';

CREATE TABLE verification_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    verification_id TEXT NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    -- HMAC-SHA256 of the code with the server's pepper; never the code.
    code_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX verification_codes_by_verification ON verification_codes (verification_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    "to" TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'whatsapp')),
    template TEXT,
    -- Emptied when a one-time code's message can no longer be sent.
    body TEXT NOT NULL,
    segments INTEGER NOT NULL CHECK (segments >= 0),
    priority INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'expired')
    ),
    -- The API key's name, never the key.
    api_key TEXT NOT NULL,
    idempotency_key TEXT,
    verification_id TEXT REFERENCES verifications (id) ON DELETE SET NULL,
    send_before INTEGER,
    provider_sid TEXT,
    error_code TEXT,
    error_message TEXT,
    attempt_count INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    next_attempt_at INTEGER NOT NULL,
    -- The lease of the dispatcher that claimed the message; set only while `sending`.
    locked_until INTEGER,
    claim_token TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((status = 'sending') = (locked_until IS NOT NULL AND claim_token IS NOT NULL))
);

CREATE UNIQUE INDEX messages_idempotency_key
    ON messages (api_key, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Claiming walks this index in dispatch order; finished messages leave it.
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number INTEGER NOT NULL CHECK (number >= 0),
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error')),
    http_status INTEGER,
    error_code TEXT,
    error_message TEXT
);

CREATE INDEX message_attempts_by_message ON message_attempts (message_id, number);
