-- Partitions (issue 23, item 3): the large tables are partitioned by week, so that retention
-- drops a week of rows as one table instead of deleting them row by row, and the week being
-- written (the hot partition) stays small.
--
-- Messages and verifications are partitioned by range of their id: ids are UUIDv7, whose first
-- 48 bits are the millisecond they were minted, so a week is a range of ids and `id` stays the
-- primary key (and every lookup by id reads one partition). Their attempts, delivery events and
-- codes are partitioned by their parent's id over the same ranges, so that a week of messages
-- goes with its attempts and events. Two keys that were unique across the table cannot stay
-- so (a partitioned table's unique keys must include its partition key):
-- - an API key's `Idempotency-Key` moves to a small side table, `message_idempotency_keys`,
--   written only for messages that carry a key (the unique index it replaces was that write);
-- - `provider_sid` keeps a plain index in each partition: a status callback's lookup reads one
--   index per partition, and no write is added per message.
-- The foreign keys between these tables go (a key referencing a partitioned table blocks the
-- detach of its partitions and checks, then locks, the parent row on every insert): a child
-- row is only ever written with or after its parent, under the parent's lock, and the store
-- removes children with their parents.
--
-- Run on a live database, today's tables become each table's first partition, kept whole (no
-- row is copied): the migration takes the tables' locks, checks that every row fits the first
-- partition's range (one read of each table) and builds the non-unique `provider_sid` index and
-- the side table from the existing rows; docs/performance.md says how long that takes per
-- million rows. Each table also gets a DEFAULT partition, so that an insert never fails for
-- want of a partition; the service creates the weeks ahead (`sms_notify_prepare_partitions`).

-- The smallest UUIDv7 minted at `at` (to the millisecond): ids minted earlier sort below it.
CREATE FUNCTION sms_notify_uuid_at(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

-- When a UUIDv7 was minted (for another UUID, a meaningless time).
CREATE FUNCTION sms_notify_uuid_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_timestamp(('x' || lpad(substr(replace(id::text, '-', ''), 1, 12), 16, '0'))::bit(64)::bigint
                        / 1000.0)
$$;

-- The partitioned tables and the column each is partitioned by, parents first.
CREATE FUNCTION sms_notify_partitioned(OUT name text, OUT key text) RETURNS SETOF record
LANGUAGE sql IMMUTABLE AS $$
    VALUES ('messages', 'id'), ('message_attempts', 'message_id'),
           ('message_events', 'message_id'), ('verifications', 'id'),
           ('verification_codes', 'verification_id')
$$;

-- The upper bound of `parent`'s highest range partition (NULL for none).
CREATE FUNCTION sms_notify_partitions_end(parent text) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([0-9a-f-]+)''\)')::uuid
    FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
    WHERE i.inhparent = parent::regclass
      AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM%'
    ORDER BY 1 DESC LIMIT 1
$$;

-- Creates every table's weekly partitions (Monday to Monday, UTC) from its highest one up to
-- the week holding `until`, and answers how many it created. A partition is created on its
-- own and attached, which locks the parent only against other DDL (and the DEFAULT partition
-- while its rows are checked: it is empty but for rows of weeks not yet created, which move
-- into their week first). One caller at a time; a lock not granted
-- within a moment fails the call (the service calls again later, weeks ahead of need) rather
-- than queueing the API behind it.
CREATE FUNCTION sms_notify_prepare_partitions(until timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    t record;
    week timestamptz;
    lower uuid;
    upper uuid;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(7235454358155866993);
    PERFORM set_config('lock_timeout', '100ms', true);
    FOR t IN SELECT * FROM sms_notify_partitioned() LOOP
        -- After the highest week (this week's start when none is left).
        week := coalesce(sms_notify_uuid_time(sms_notify_partitions_end(t.name)),
            date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
        WHILE week <= until LOOP
            lower := sms_notify_uuid_at(week);
            upper := sms_notify_uuid_at(week + interval '7 days');
            part := t.name || '_p' || to_char(week AT TIME ZONE 'UTC', 'YYYYMMDD');
            EXECUTE format(
                'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                'INCLUDING STORAGE)', part, t.name);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE %I >= %L AND %I < %L RETURNING *) '
                'INSERT INTO %I SELECT * FROM moved',
                t.name || '_default', t.key, lower, t.key, upper, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                t.name, part, lower, upper);
            created := created + 1;
            week := week + interval '7 days';
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- An API key's idempotency keys, each with the message that took it (its primary key is
-- built once the existing keys are in: a sorted build rather than an insert per key).
CREATE TABLE message_idempotency_keys (
    api_key text NOT NULL,
    idempotency_key text NOT NULL,
    message_id uuid NOT NULL
);

DO $$
DECLARE
    t record;
    legacy text;
    definition text;
    index record;
    first_week timestamptz;
    bound uuid;
    triggers text[] := '{}';
BEGIN
    LOCK TABLE messages, message_attempts, message_events, verifications, verification_codes
        IN ACCESS EXCLUSIVE MODE;
    -- The index builds below sort in memory rather than on disk (this transaction only).
    PERFORM set_config('maintenance_work_mem', '256MB', true);

    -- Every foreign key referencing one of these tables (0001's four, and any added since).
    FOR definition, legacy IN
        SELECT c.conname, c.conrelid::regclass::text FROM pg_constraint AS c
        WHERE c.contype = 'f'
          AND c.confrelid IN (SELECT p.name::regclass FROM sms_notify_partitioned() AS p)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', legacy, definition);
    END LOOP;

    INSERT INTO message_idempotency_keys (api_key, idempotency_key, message_id)
    SELECT api_key, idempotency_key, id FROM messages WHERE idempotency_key IS NOT NULL;
    ALTER TABLE message_idempotency_keys ADD PRIMARY KEY (api_key, idempotency_key);
    DROP INDEX messages_idempotency_key;
    -- Unique only across one partition from now on; what no lookup needs goes.
    DROP INDEX messages_provider_sid;
    CREATE INDEX messages_by_provider_sid ON messages (provider_sid)
        WHERE provider_sid IS NOT NULL;
    ALTER TABLE message_attempts DROP CONSTRAINT message_attempts_pkey;
    ALTER TABLE message_events DROP CONSTRAINT message_events_pkey;
    ALTER TABLE verification_codes DROP CONSTRAINT verification_codes_pkey;

    -- The first partition ends with the week after the newest id (or starts this week's).
    SELECT coalesce(
        date_trunc('week', greatest(
            (SELECT sms_notify_uuid_time(max_id) FROM (
                SELECT id AS max_id FROM messages ORDER BY id DESC LIMIT 1) AS m),
            (SELECT sms_notify_uuid_time(max_id) FROM (
                SELECT id AS max_id FROM verifications ORDER BY id DESC LIMIT 1) AS v)
        ) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '7 days',
        date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
    INTO first_week;
    bound := sms_notify_uuid_at(first_week);

    FOR t IN SELECT * FROM sms_notify_partitioned() LOOP
        legacy := t.name || '_p' || to_char((first_week - interval '7 days') AT TIME ZONE 'UTC',
            'YYYYMMDD') || '_and_before';
        -- The parent takes the table's triggers and indexes under their own names.
        FOR definition IN
            SELECT pg_get_triggerdef(oid) FROM pg_trigger
            WHERE tgrelid = t.name::regclass AND NOT tgisinternal
        LOOP
            triggers := triggers || definition;
        END LOOP;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t.name, legacy);
        FOR definition IN
            SELECT tgname FROM pg_trigger
            WHERE tgrelid = legacy::regclass AND NOT tgisinternal
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %I', definition, legacy);
        END LOOP;
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE '
            'INCLUDING COMMENTS) PARTITION BY RANGE (%I)', t.name, legacy, t.key);
        FOR index IN
            SELECT c.relname, pg_get_indexdef(x.indexrelid) AS definition, x.indisprimary
            FROM pg_index AS x JOIN pg_class AS c ON c.oid = x.indexrelid
            WHERE x.indrelid = legacy::regclass
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', index.relname, left(legacy || CASE
                WHEN starts_with(index.relname, t.name || '_')
                    THEN substr(index.relname, length(t.name) + 1)
                ELSE '_' || index.relname END, 63));
            IF index.indisprimary THEN
                EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%I)', t.name, t.key);
            ELSE
                definition := replace(index.definition,
                    format(' ON %I.%I ', current_schema(), legacy),
                    format(' ON %I.%I ', current_schema(), t.name));
                BEGIN
                    EXECUTE definition;
                EXCEPTION WHEN invalid_table_definition OR feature_not_supported THEN
                    -- Unique across the table without its partition key: kept as an index.
                    EXECUTE replace(definition, 'CREATE UNIQUE INDEX', 'CREATE INDEX');
                END;
            END IF;
        END LOOP;
        -- A sequence of the table's column belongs to the parent's, so that dropping the first
        -- partition keeps it.
        EXECUTE format('ALTER SEQUENCE IF EXISTS %s OWNED BY %I.id',
            coalesce(pg_get_serial_sequence(legacy, 'id'), 'sms_notify_no_such_sequence'),
            t.name);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
            t.name, legacy, bound);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t.name || '_default', t.name);
    END LOOP;
    FOREACH definition IN ARRAY triggers LOOP
        EXECUTE definition;
    END LOOP;
END
$$;

-- This week and the next two exist from the start; the service keeps them ahead.
SELECT sms_notify_prepare_partitions(now() + interval '14 days');
