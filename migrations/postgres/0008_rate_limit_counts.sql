-- How many events each limit key keeps in rate_limit_events, so that a limit knows whether its
-- window is full without counting them: a key allowed thousands of sends an hour (an API key at
-- the benchmark's 3,000 codes/s) would otherwise have every send scan its whole window, under
-- the key's lock. Kept by `acquire`, in the same transaction as the events it deletes and adds.
CREATE TABLE rate_limit_counts (
    key text PRIMARY KEY,
    events bigint NOT NULL CHECK (events >= 0)
);

INSERT INTO rate_limit_counts (key, events)
SELECT key, count(*) FROM rate_limit_events GROUP BY key;
