-- Throughput caps shared by every instance (DISPATCH_CONCURRENCY, SENDER_MPS).

-- The next free send time of each sending number or messaging service; claims book send
-- times here, one spacing apart, under the claim lock.
CREATE TABLE sender_pacing (
    sender text PRIMARY KEY,
    next_send_at timestamptz NOT NULL
);

-- A claim counts the messages in flight (`sending` under a live lease) on every instance.
CREATE INDEX messages_in_flight
    ON messages (locked_until)
    WHERE status = 'sending';
