-- Hourly rollups of every report, as migrations/postgres/0038_rollups.sql (times in
-- microseconds, costs in whole currency units and the rest in units of 10^-8).

-- `usage_rollups` without its checks: a late receipt's change is a pair of rows, one negative.
CREATE TABLE usage_rollups_signed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hour INTEGER NOT NULL,
    api_key TEXT NOT NULL,
    template TEXT,
    country TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    currency TEXT,
    messages INTEGER NOT NULL,
    segments INTEGER NOT NULL,
    cost_whole INTEGER NOT NULL DEFAULT 0,
    cost_rest INTEGER NOT NULL DEFAULT 0
);
INSERT INTO usage_rollups_signed SELECT * FROM usage_rollups;
DROP TABLE usage_rollups;
ALTER TABLE usage_rollups_signed RENAME TO usage_rollups;
CREATE INDEX usage_rollups_by_hour ON usage_rollups (hour);

CREATE TABLE rollup_watermark (
    only_row INTEGER PRIMARY KEY NOT NULL CHECK (only_row = 1),
    folded_until INTEGER
);
INSERT INTO rollup_watermark (only_row, folded_until) VALUES (1, NULL);

CREATE TABLE conversion_rollups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hour INTEGER NOT NULL,
    by_prefix INTEGER NOT NULL,
    api_key TEXT NOT NULL,
    channel TEXT,
    country TEXT,
    provider TEXT,
    prefix TEXT,
    started INTEGER NOT NULL,
    codes_sent INTEGER NOT NULL,
    approved INTEGER NOT NULL
);
CREATE INDEX conversion_rollups_by_hour ON conversion_rollups (by_prefix, hour);

CREATE TABLE conversion_latency_rollups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hour INTEGER NOT NULL,
    by_prefix INTEGER NOT NULL,
    api_key TEXT NOT NULL,
    channel TEXT,
    country TEXT,
    provider TEXT,
    prefix TEXT,
    latency TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX conversion_latency_rollups_by_hour ON conversion_latency_rollups (by_prefix, hour);

CREATE TABLE conversion_cost_rollups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hour INTEGER NOT NULL,
    by_prefix INTEGER NOT NULL,
    api_key TEXT NOT NULL,
    channel TEXT,
    country TEXT,
    provider TEXT,
    prefix TEXT,
    currency TEXT NOT NULL,
    cost_whole INTEGER NOT NULL,
    cost_rest INTEGER NOT NULL
);
CREATE INDEX conversion_cost_rollups_by_hour ON conversion_cost_rollups (by_prefix, hour);
