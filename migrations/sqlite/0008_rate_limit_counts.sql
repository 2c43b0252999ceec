-- How many events each limit key keeps in rate_limit_events, so that a limit knows whether its
-- window is full without counting them; the same table as migrations/postgres.
CREATE TABLE rate_limit_counts (
    key TEXT PRIMARY KEY,
    events INTEGER NOT NULL CHECK (events >= 0)
);

INSERT INTO rate_limit_counts (key, events)
SELECT key, count(*) FROM rate_limit_events GROUP BY key;
