-- The fraud guard's shared state (issue 18): signals counted per hour, blocks that heal, the
-- safe list and the decision log. In the database so that every instance judges alike.

-- Codes asked for per signal key (a country, a destination prefix, an API key, a client IP)
-- and hour: how many were sent, refused, checked at least once and approved. A check or an
-- approval counts in the hour its code was asked for. Hours older than the baseline are
-- forgotten by `FraudStore::forget_counts`.
CREATE TABLE fraud_code_counts (
    scope text NOT NULL,
    key text NOT NULL,
    hour timestamptz NOT NULL,
    sent bigint NOT NULL DEFAULT 0 CHECK (sent >= 0),
    refused bigint NOT NULL DEFAULT 0 CHECK (refused >= 0),
    checked bigint NOT NULL DEFAULT 0 CHECK (checked >= 0),
    approved bigint NOT NULL DEFAULT 0 CHECK (approved >= 0),
    PRIMARY KEY (scope, key, hour)
);

CREATE INDEX fraud_code_counts_by_hour ON fraud_code_counts (hour);

-- One row per prefix ever blocked; in force while `expires_at` is NULL (until lifted) or later
-- than now. Lifting sets `expires_at` to the time it was lifted. `reasons` is the JSON array of
-- `{code, detail}` the decision gave.
CREATE TABLE fraud_blocks (
    prefix text PRIMARY KEY,
    reasons jsonb NOT NULL,
    codes bigint NOT NULL CHECK (codes >= 0),
    created_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,
    expires_at timestamptz,
    -- Placed by an admin: the guard neither replaces nor renews it.
    manual boolean NOT NULL
);

CREATE TABLE fraud_safe_list (
    prefix text PRIMARY KEY,
    note text,
    added_at timestamptz NOT NULL
);

-- Every decision that was not a plain allow, for admins (`GET /v1/fraud/decisions`).
CREATE TABLE fraud_decisions (
    id uuid PRIMARY KEY,
    at timestamptz NOT NULL,
    "to" text NOT NULL,
    api_key text NOT NULL,
    client_ip text,
    verification_id uuid,
    action text NOT NULL,
    reasons jsonb NOT NULL
);

CREATE INDEX fraud_decisions_newest_first ON fraud_decisions (at DESC, id DESC);
