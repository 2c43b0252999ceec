-- `acquire` (send limits) for a batch of sends in one statement. Each limit key's count row is
-- a lock held until commit, and every code of one API key takes the same row: as a
-- client-driven transaction (a statement per key, the events, then COMMIT, each a round trip)
-- the row was held for four round trips, which capped one API key at a few hundred codes a
-- second. Here the sends that arrive together are judged in one call, in order, each seeing
-- the counts the ones before it left.
--
-- `sends` numbers each key's send (1, 2, ...): the keys of one send are consecutive. When one of a send's keys is full, nothing is counted for that send and
-- a row names the send, the key, and the time its window has room again (NULL for a limit of
-- zero); a send without a row was admitted and counted in each of its keys.
CREATE FUNCTION sms_notify_acquire(
    sends int[],
    keys text[],
    maxes bigint[],
    window_starts timestamptz[],
    sent_ats timestamptz[]
) RETURNS TABLE (refused_send int, refused_key text, room_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
    first int := 1;
    last int;
    admitted boolean;
    total int := coalesce(array_length(keys, 1), 0);
BEGIN
    -- A crash can lose only the last fraction of a second of counts (see rate_limits.rs).
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The batch's keys that have a count are locked first, all in one order, so that two
    -- batches (of two instances) never hold what the other waits for.
    PERFORM 1 FROM rate_limit_counts WHERE key = ANY (keys) ORDER BY key DESC FOR UPDATE;
    WHILE first <= total LOOP
        last := first;
        WHILE last < total AND sends[last + 1] = sends[first] LOOP
            last := last + 1;
        END LOOP;
        admitted := true;
        FOR i IN first .. last LOOP
            -- Forgets the key's sends that have left its window, and takes the key's count.
            WITH expired AS (
                DELETE FROM rate_limit_events
                WHERE key = keys[i] AND at <= window_starts[i]
                RETURNING 1
            )
            UPDATE rate_limit_counts AS c
            SET events = c.events - (SELECT count(*) FROM expired)
            WHERE c.key = keys[i]
            RETURNING c.events INTO kept;
            IF NOT FOUND THEN
                -- A key without a count yet counts its events once (only then: counting a busy
                -- key's window on every send was most of this function's time). A caller that
                -- created the count meanwhile counted the same events.
                INSERT INTO rate_limit_counts AS c (key, events)
                SELECT keys[i], count(*) FROM rate_limit_events
                WHERE key = keys[i] AND at > window_starts[i]
                ON CONFLICT (key) DO UPDATE SET events = c.events
                RETURNING c.events INTO kept;
            END IF;
            IF kept >= maxes[i] THEN
                room_at := NULL;
                IF maxes[i] > 0 THEN
                    -- The window has room again once the max-th most recent send has left it.
                    SELECT at INTO room_at FROM rate_limit_events
                    WHERE key = keys[i] ORDER BY at LIMIT 1 OFFSET kept - maxes[i];
                END IF;
                IF maxes[i] = 0 OR room_at IS NOT NULL THEN
                    refused_send := sends[i];
                    refused_key := keys[i];
                    RETURN NEXT;
                    admitted := false;
                    EXIT;
                END IF;
            END IF;
        END LOOP;
        IF admitted THEN
            -- Key by key through the primary key: a join of the keys with the counts (as a
            -- planner may choose to hash them) reads every count row, one per number ever sent
            -- a code. A key named twice counts twice.
            FOR i IN first .. last LOOP
                UPDATE rate_limit_counts SET events = events + 1 WHERE key = keys[i];
                INSERT INTO rate_limit_events (key, at) VALUES (keys[i], sent_ats[i]);
            END LOOP;
        END IF;
        first := last + 1;
    END LOOP;
END
$$;
