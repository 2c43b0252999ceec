-- The fraud guard's shared state (issue 18); the same tables as migrations/postgres. Times are
-- integer microseconds (UTC), ids hyphenated UUID text, reasons JSON text.

CREATE TABLE fraud_code_counts (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    hour INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0),
    refused INTEGER NOT NULL DEFAULT 0 CHECK (refused >= 0),
    checked INTEGER NOT NULL DEFAULT 0 CHECK (checked >= 0),
    approved INTEGER NOT NULL DEFAULT 0 CHECK (approved >= 0),
    PRIMARY KEY (scope, key, hour)
);

CREATE INDEX fraud_code_counts_by_hour ON fraud_code_counts (hour);

CREATE TABLE fraud_blocks (
    prefix TEXT PRIMARY KEY,
    reasons TEXT NOT NULL,
    codes INTEGER NOT NULL CHECK (codes >= 0),
    created_at INTEGER NOT NULL,
    renewed_at INTEGER NOT NULL,
    expires_at INTEGER,
    manual INTEGER NOT NULL
);

CREATE TABLE fraud_safe_list (
    prefix TEXT PRIMARY KEY,
    note TEXT,
    added_at INTEGER NOT NULL
);

CREATE TABLE fraud_decisions (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    "to" TEXT NOT NULL,
    api_key TEXT NOT NULL,
    client_ip TEXT,
    verification_id TEXT,
    action TEXT NOT NULL,
    reasons TEXT NOT NULL
);

CREATE INDEX fraud_decisions_newest_first ON fraud_decisions (at DESC, id DESC);
