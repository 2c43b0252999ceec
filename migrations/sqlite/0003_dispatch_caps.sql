-- Throughput caps (DISPATCH_CONCURRENCY, SENDER_MPS), as in migrations/postgres.

-- The next free send time (microseconds) of each sending number or messaging service.
CREATE TABLE sender_pacing (
    sender TEXT PRIMARY KEY NOT NULL,
    next_send_at INTEGER NOT NULL
);

-- A claim counts the messages in flight (`sending` under a live lease).
CREATE INDEX messages_in_flight
    ON messages (locked_until)
    WHERE status = 'sending';
