-- Hourly rollups of every report (issue 20, item 6): the usage, error-code and cost reports read
-- `usage_rollups`, the conversion report the three `conversion_*rollups`, for the hours before
-- the watermark, and raw rows only after it. The rollup job folds whole hours, set-based, from
-- the watermark on; a delivery receipt for a message of a folded hour adds its change as a
-- pair of rows (the old figures taken off, the new ones added), so rows are summed by the
-- reports, never merged, and may be negative.

-- `usage_rollups` (0030) keeps the counts of removed messages and now also the folded hours:
-- one truth for both. Deltas may be negative.
ALTER TABLE usage_rollups DROP CONSTRAINT IF EXISTS usage_rollups_messages_check;
ALTER TABLE usage_rollups DROP CONSTRAINT IF EXISTS usage_rollups_segments_check;

-- Where folding has reached: every hour before `folded_until` is in the rollups; NULL until
-- the first fold. One row.
CREATE TABLE rollup_watermark (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    folded_until timestamptz
);
INSERT INTO rollup_watermark (only_row, folded_until) VALUES (true, NULL);

-- The verifications started in an hour, per group. Each fold writes two sets of rows: by
-- channel, country and provider (`by_prefix` false, `prefix` NULL), and by prefix alone
-- (`by_prefix` true), so that the common groupings read few rows whatever the numbers.
CREATE TABLE conversion_rollups (
    id bigserial PRIMARY KEY,
    hour timestamptz NOT NULL,
    by_prefix boolean NOT NULL,
    api_key text NOT NULL,
    channel text,
    country text,
    provider text,
    prefix text,
    started bigint NOT NULL,
    codes_sent bigint NOT NULL,
    approved bigint NOT NULL
);
CREATE INDEX conversion_rollups_by_hour ON conversion_rollups (by_prefix, hour);

-- Their latencies as counts per bucket of `domain::latency::BOUNDS_MS`.
CREATE TABLE conversion_latency_rollups (
    id bigserial PRIMARY KEY,
    hour timestamptz NOT NULL,
    by_prefix boolean NOT NULL,
    api_key text NOT NULL,
    channel text,
    country text,
    provider text,
    prefix text,
    latency text NOT NULL,
    bucket integer NOT NULL,
    count bigint NOT NULL
);
CREATE INDEX conversion_latency_rollups_by_hour ON conversion_latency_rollups (by_prefix, hour);

-- What their code messages cost, exactly, per currency.
CREATE TABLE conversion_cost_rollups (
    id bigserial PRIMARY KEY,
    hour timestamptz NOT NULL,
    by_prefix boolean NOT NULL,
    api_key text NOT NULL,
    channel text,
    country text,
    provider text,
    prefix text,
    currency text NOT NULL,
    cost numeric NOT NULL
);
CREATE INDEX conversion_cost_rollups_by_hour ON conversion_cost_rollups (by_prefix, hour);
