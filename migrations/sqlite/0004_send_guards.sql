-- Send limits over sliding windows, and send volume per country calling code for the pumping
-- alarm; the same tables as migrations/postgres. Times are integer microseconds (UTC).

-- One row per counted send and limit key (`number:+1555...`, `api-key:auth`). A limit counts the
-- rows of its key inside its window; older rows are deleted as new sends are counted.
CREATE TABLE rate_limit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    at INTEGER NOT NULL
);

CREATE INDEX rate_limit_events_by_key ON rate_limit_events (key, at);

-- Codes sent per country calling code and hour; hours older than the baseline are deleted as
-- new sends are counted.
CREATE TABLE country_send_volume (
    calling_code INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    sends INTEGER NOT NULL CHECK (sends >= 0),
    PRIMARY KEY (calling_code, hour)
);
