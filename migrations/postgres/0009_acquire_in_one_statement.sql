-- `acquire` (send limits) in one statement. Each limit key's count row is a lock held until
-- commit, and every code of one API key takes the same row: as a client-driven transaction
-- (a statement per key, the events, then COMMIT, each a round trip) the row was held for four
-- round trips, which capped one API key at a few hundred codes a second. Run here, it is held
-- for the function's own work.
--
-- Keys are taken in the order given (the caller sorts them, so that two callers never wait on
-- each other). When a key is full, nothing is counted and its key and the time its window has
-- room again are returned (NULL for a limit of zero); no row means every key admitted the send.
CREATE FUNCTION sms_notify_acquire(
    keys text[],
    maxes bigint[],
    window_starts timestamptz[],
    sent_at timestamptz
) RETURNS TABLE (refused_key text, room_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
BEGIN
    -- A crash can lose only the last fraction of a second of counts (see rate_limits.rs).
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        -- Forgets the key's sends that have left its window, and takes the key's count.
        WITH expired AS (
            DELETE FROM rate_limit_events
            WHERE key = keys[i] AND at <= window_starts[i]
            RETURNING 1
        )
        UPDATE rate_limit_counts AS c SET events = c.events - (SELECT count(*) FROM expired)
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
            refused_key := keys[i];
            room_at := NULL;
            IF maxes[i] = 0 THEN
                RETURN NEXT;
                RETURN;
            END IF;
            -- The window has room again once the max-th most recent send has left it.
            SELECT at INTO room_at FROM rate_limit_events
            WHERE key = keys[i] ORDER BY at LIMIT 1 OFFSET kept - maxes[i];
            IF room_at IS NOT NULL THEN
                RETURN NEXT;
                RETURN;
            END IF;
        END IF;
    END LOOP;
    -- Key by key through the primary key: a join of the keys with the counts (as a planner
    -- may choose to hash them) reads every count row, one per number ever sent a code.
    -- A key named twice counts twice.
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        UPDATE rate_limit_counts SET events = events + 1 WHERE key = keys[i];
        INSERT INTO rate_limit_events (key, at) VALUES (keys[i], sent_at);
    END LOOP;
END
$$;
