-- `sms_notify_acquire()` with a fast path for the usual batch, one whose every send has room.
--
-- Judging send by send (migration 0009) cost about seven statements per send: for each of its
-- keys, the expiry of old events, the count, then its increment and its event. Most batches
-- refuse nothing: every key has room for all of the batch's sends to it, counted against the
-- key's window at its earliest send in the batch (later sends' windows can only have lost
-- events, so this is an upper bound). Such a batch is admitted whole in a handful of
-- statements, whatever its size: the counts are read with their locks, each existing key's
-- expired events deleted (one statement per key), the new keys created in one statement, and
-- the counts and events written in one statement each. Any other batch is judged send by send
-- by 0009's function, kept under a new name, so refusals and their `room_at` are exactly what
-- they were.
ALTER FUNCTION sms_notify_acquire(int[], text[], bigint[], timestamptz[], timestamptz[])
    RENAME TO sms_notify_acquire_in_order;

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
    total int := coalesce(array_length(keys, 1), 0);
    -- The batch's distinct keys, with their earliest window start, their number of sends and
    -- their limit; then how their counts change.
    batch_keys text[];
    batch_starts timestamptz[];
    batch_sends bigint[];
    batch_maxes bigint[];
    deltas bigint[];
    counted_keys text[];
    counted_events bigint[];
    at_index int;
    expired bigint;
    fits boolean := true;
BEGIN
    -- A crash can lose only the last fraction of a second of counts (see rate_limits.rs).
    PERFORM set_config('synchronous_commit', 'off', true);
    IF total = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(b.key ORDER BY b.key DESC), array_agg(b.start ORDER BY b.key DESC),
           array_agg(b.sends ORDER BY b.key DESC), array_agg(b.max ORDER BY b.key DESC)
    INTO batch_keys, batch_starts, batch_sends, batch_maxes
    FROM (
        SELECT u.key, min(u.window_start) AS start, count(*) AS sends, min(u.max) AS max
        FROM unnest(keys, window_starts, maxes) AS u(key, window_start, max)
        GROUP BY u.key
    ) AS b;
    deltas := array_fill(0::bigint, ARRAY[array_length(batch_keys, 1)]);
    -- The batch's keys that have a count are locked first, all in one order, so that two
    -- batches (of two instances) never hold what the other waits for.
    SELECT array_agg(c.key), array_agg(c.events) INTO counted_keys, counted_events
    FROM (
        SELECT key, events FROM rate_limit_counts
        WHERE key = ANY (batch_keys) ORDER BY key DESC FOR UPDATE
    ) AS c;
    FOR i IN 1 .. coalesce(array_length(counted_keys, 1), 0) LOOP
        at_index := array_position(batch_keys, counted_keys[i]);
        WITH gone AS (
            DELETE FROM rate_limit_events
            WHERE key = counted_keys[i] AND at <= batch_starts[at_index]
            RETURNING 1
        )
        SELECT count(*) INTO expired FROM gone;
        deltas[at_index] := -expired;
        fits := fits
            AND counted_events[i] - expired + batch_sends[at_index] <= batch_maxes[at_index];
    END LOOP;
    -- A key without a count yet counts its events once. A caller that created the count
    -- meanwhile counted the same events.
    FOR kept, at_index IN
        INSERT INTO rate_limit_counts AS c (key, events)
        SELECT n.key,
               (SELECT count(*) FROM rate_limit_events AS e
                WHERE e.key = n.key AND e.at > n.start)
        FROM unnest(batch_keys, batch_starts) AS n(key, start)
        WHERE n.key <> ALL (coalesce(counted_keys, '{}'))
        ORDER BY n.key DESC
        ON CONFLICT (key) DO UPDATE SET events = c.events
        RETURNING c.events, array_position(batch_keys, c.key)
    LOOP
        fits := fits AND kept + batch_sends[at_index] <= batch_maxes[at_index];
    END LOOP;
    IF fits THEN
        FOR i IN 1 .. array_length(batch_keys, 1) LOOP
            deltas[i] := deltas[i] + batch_sends[i];
        END LOOP;
        INSERT INTO rate_limit_events (key, at)
        SELECT u.key, u.at FROM unnest(keys, sent_ats) AS u(key, at);
    END IF;
    -- `key = ANY` leads the planner to the primary key: joined alone with the deltas, the
    -- counts may be read whole (one row per number ever sent a code).
    UPDATE rate_limit_counts AS c SET events = c.events + d.delta
    FROM unnest(batch_keys, deltas) AS d(key, delta)
    WHERE c.key = ANY (batch_keys) AND c.key = d.key AND d.delta <> 0;
    IF NOT fits THEN
        -- Some key may be full: each send is judged in order, seeing the counts the ones
        -- before it left (the expiry above is already counted).
        RETURN QUERY
        SELECT * FROM sms_notify_acquire_in_order(sends, keys, maxes, window_starts, sent_ats);
    END IF;
END
$$;
