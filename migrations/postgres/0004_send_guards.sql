-- Send limits over sliding windows, and send volume per country calling code for the pumping
-- alarm. Both live here rather than in an instance's memory so that they hold across instances.

-- One row per counted send and limit key (`number:+1555...`, `api-key:auth`). A limit counts the
-- rows of its key inside its window; older rows are deleted as new sends are counted, so a key
-- keeps at most about a window's worth.
CREATE TABLE rate_limit_events (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    at timestamptz NOT NULL
);

CREATE INDEX rate_limit_events_by_key ON rate_limit_events (key, at);

-- Codes sent per country calling code and hour; hours older than the baseline are deleted as
-- new sends are counted.
CREATE TABLE country_send_volume (
    calling_code integer NOT NULL,
    hour timestamptz NOT NULL,
    sends bigint NOT NULL CHECK (sends >= 0),
    PRIMARY KEY (calling_code, hour)
);
