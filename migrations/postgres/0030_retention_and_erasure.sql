-- Retention and erasure (issue 23, items 1 and 2): what the lifecycle job and an erasure need.

-- The usage report's counts of messages that retention or an erasure removed, folded in the
-- same transaction that deletes them, so that a report over a removed period answers what it
-- answered before. One row per fold and group (rows of one group are summed by the report,
-- never merged), by the UTC hour the messages were created in: a report's range starts and
-- ends on hours in practice, and an hour keeps it exact where a day would not. No number and
-- no body: only what the report groups by.
CREATE TABLE usage_rollups (
    id bigserial PRIMARY KEY,
    hour timestamptz NOT NULL,
    api_key text NOT NULL,
    template text,
    country text,
    status text NOT NULL,
    error_code text,
    -- The currency of the messages' prices; NULL for messages without a readable price.
    currency text,
    messages bigint NOT NULL CHECK (messages >= 0),
    segments bigint NOT NULL CHECK (segments >= 0),
    -- The sum of the prices, exactly, in `currency`.
    cost numeric NOT NULL DEFAULT 0
);

CREATE INDEX usage_rollups_by_hour ON usage_rollups (hour);

-- One row per background job that must run on one instance at a time: the instance holding an
-- unexpired lease runs it, the others skip. A row rather than an advisory lock so that both
-- stores behave alike and tests drive the expiry with their clock.
CREATE TABLE job_leases (
    job text PRIMARY KEY,
    holder uuid NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Retention walks verifications by age.
CREATE INDEX verifications_created_at ON verifications (created_at);

-- The messages whose body retention must still empty: leaving this index as they are
-- emptied, it stays as small as MESSAGE_BODY_RETENTION_HOURS of plain messages.
CREATE INDEX messages_bodies_kept ON messages (created_at) WHERE body <> '' AND NOT sensitive;
