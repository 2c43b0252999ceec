-- Retention and erasure (issue 23, items 1 and 2), as migrations/postgres/0030.

-- The usage report's counts of removed messages, by UTC hour of creation (microseconds, as
-- every time here). `cost_whole` and `cost_rest` are the exact sum of the prices: whole
-- currency units, and the rest in units of 10^-8, as the report sums them.
CREATE TABLE usage_rollups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hour INTEGER NOT NULL,
    api_key TEXT NOT NULL,
    template TEXT,
    country TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    currency TEXT,
    messages INTEGER NOT NULL CHECK (messages >= 0),
    segments INTEGER NOT NULL CHECK (segments >= 0),
    cost_whole INTEGER NOT NULL DEFAULT 0,
    cost_rest INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX usage_rollups_by_hour ON usage_rollups (hour);

-- The leases of jobs that run on one instance (or process) at a time.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX verifications_created_at ON verifications (created_at);

CREATE INDEX messages_bodies_kept ON messages (created_at) WHERE body <> '' AND NOT sensitive;
