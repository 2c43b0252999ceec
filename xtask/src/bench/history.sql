-- The history figures' dataset (xtask/src/bench/history.rs): months of traffic as the service
-- stores it, generated with generate_series into a database the service has migrated. Each
-- step starts with a `-- step G.L: NAME` line and runs as one psql command, timed on its own:
-- the steps of group G run together, one session per lane L (a lane's steps in order), and
-- the groups one after the other; group 9 is timed apart from the generation. `{NAME}`
-- placeholders are replaced first: {V} verifications, {P} plain messages, {R} resent
-- codes (one per ten verifications), {START_MS} and {SPAN_MS} the time they are spread over,
-- {RECENT_MS} (ten minutes before the end: verifications after it are still pending),
-- {BODIES_MS} (bodies older are emptied, as retention does), {UNCONFIRMED_MS} (messages older
-- may have stayed `sent`, as the reconciler gives up on them).
--
-- Verification v (1..V) starts at {START_MS} + (v - 1) * {SPAN_MS} / {V}; its first code is
-- message v, 3 ms later, and every tenth verification's second code is message V + v / 10,
-- 30 s later; plain message p is message V + R + p, spread over the same time. Ids are UUIDv7
-- of the row's millisecond (the variant nibble tells messages, 8, from verifications, 9), so
-- every row lands in the week its time belongs to.

-- step 1.1: helpers
CREATE FUNCTION bench_uuid(ms bigint, n bigint, variant text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(ms), 12, '0') || '7000' || variant || lpad(to_hex(n), 15, '0'))::uuid
$$;
CREATE FUNCTION bench_ts(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(ms::float8 / 1000)
$$;
-- A share of traffic per country, as a fleet with users in several markets sees it.
CREATE FUNCTION bench_country(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN (n * 7919) % 100 < 40 THEN 'US' WHEN (n * 7919) % 100 < 55 THEN 'GB'
                WHEN (n * 7919) % 100 < 65 THEN 'DE' WHEN (n * 7919) % 100 < 75 THEN 'FR'
                WHEN (n * 7919) % 100 < 85 THEN 'IN' WHEN (n * 7919) % 100 < 93 THEN 'BR'
                ELSE 'NG' END
$$;
CREATE FUNCTION bench_to(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE bench_country(n)
        WHEN 'US' THEN '+1' || (2000000000 + (n * 104729) % 7000000000)::text
        WHEN 'GB' THEN '+447' || lpad(((n * 104729) % 1000000000)::text, 9, '0')
        WHEN 'DE' THEN '+4915' || lpad(((n * 104729) % 1000000000)::text, 9, '0')
        WHEN 'FR' THEN '+336' || lpad(((n * 104729) % 100000000)::text, 8, '0')
        WHEN 'IN' THEN '+919' || lpad(((n * 104729) % 1000000000)::text, 9, '0')
        WHEN 'BR' THEN '+55119' || lpad(((n * 104729) % 100000000)::text, 8, '0')
        ELSE '+23480' || lpad(((n * 104729) % 100000000)::text, 8, '0') END
$$;
-- Twilio's price of one segment to a country (stored as spent: positive).
CREATE FUNCTION bench_price(country text, channel text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN channel = 'whatsapp' THEN '0.00500' WHEN channel = 'voice' THEN '0.01300'
        ELSE CASE country WHEN 'US' THEN '0.00790' WHEN 'GB' THEN '0.04000'
            WHEN 'DE' THEN '0.07500' WHEN 'FR' THEN '0.07000' WHEN 'IN' THEN '0.00500'
            WHEN 'BR' THEN '0.04500' ELSE '0.11000' END END
$$;
CREATE FUNCTION bench_api_key(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY['bench', 'shop', 'bank', 'games'])[1 + (n * 31) % 4]
$$;
-- A delivered message mostly; some undelivered, failed (an unreachable number, before any
-- send), or `sent` without a receipt where the reconciler has long given up on them.
CREATE FUNCTION bench_message_status(n bigint, ms bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN (n * 15485863) % 100 < 4 THEN 'undelivered'
                WHEN (n * 15485863) % 100 < 7 THEN 'failed'
                WHEN (n * 15485863) % 100 < 10 AND ms < {UNCONFIRMED_MS} THEN 'sent'
                ELSE 'delivered' END
$$;

-- step 2.1: weekly partitions
-- The migration's first partition (empty here) ends with the week it ran in: the weeks the
-- dataset spans are made in its place, as the service makes the weeks ahead.
DO $$
DECLARE
    t record;
    old text;
    old_end timestamptz;
    first_week timestamptz;
    week timestamptz;
BEGIN
    first_week := date_trunc('week', bench_ts({START_MS}) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    FOR t IN SELECT * FROM sms_notify_partitioned() LOOP
        SELECT c.relname,
               sms_notify_uuid_time(substring(pg_get_expr(c.relpartbound, c.oid)
                   FROM 'TO \(''([0-9a-f-]+)''\)')::uuid)
        INTO old, old_end
        FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = t.name::regclass
          AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM (MINVALUE)%';
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', t.name, old);
        EXECUTE format('DROP TABLE %I', old);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (MINVALUE) TO (%L)',
            t.name || '_p' || to_char((first_week - interval '7 days') AT TIME ZONE 'UTC',
                'YYYYMMDD') || '_and_before',
            t.name, sms_notify_uuid_at(first_week));
        week := first_week;
        WHILE week < old_end LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                t.name || '_p' || to_char(week AT TIME ZONE 'UTC', 'YYYYMMDD'), t.name,
                sms_notify_uuid_at(week), sms_notify_uuid_at(week + interval '7 days'));
            week := week + interval '7 days';
        END LOOP;
    END LOOP;
END
$$;

-- step 3.1: indexes set aside
-- Built once the rows are in (a sorted build each) rather than row by row; the primary keys
-- stay, their ids arriving in order.
CREATE TABLE bench_indexes AS
    SELECT c.relname AS name, x.indrelid::regclass::text AS owner,
           pg_get_indexdef(x.indexrelid) AS definition,
           -- Two lanes of builds, the messages' spread over both.
           row_number() OVER (ORDER BY x.indrelid = 'messages'::regclass DESC, c.relname) % 2
               AS lane
    FROM pg_index AS x JOIN pg_class AS c ON c.oid = x.indexrelid
    WHERE x.indrelid IN (SELECT name::regclass FROM sms_notify_partitioned())
      AND NOT x.indisprimary;
DO $$
DECLARE
    index record;
BEGIN
    FOR index IN SELECT * FROM bench_indexes LOOP
        EXECUTE format('DROP INDEX %I', index.name);
    END LOOP;
END
$$;

-- step 4.1: verifications
INSERT INTO verifications (id, "to", channel, api_key, status, check_count, max_checks,
                           send_count, max_sends, expires_at, last_sent_at, created_at,
                           updated_at, risk)
SELECT bench_uuid(ms, v, '9'), bench_to(v), channel, bench_api_key(v), status,
       CASE status WHEN 'approved' THEN 1 + (v % 9 = 0)::int WHEN 'max_attempts_reached' THEN 5
                   ELSE (v % 3 = 0)::int END,
       5, 1 + (v % 10 = 0)::int, 5,
       bench_ts(ms + 600000),
       bench_ts(ms + CASE WHEN v % 10 = 0 THEN 30000 ELSE 0 END),
       bench_ts(ms),
       bench_ts(ms + CASE status WHEN 'pending' THEN 0 WHEN 'expired' THEN 600000
                     ELSE 4000 + (v * 7) % 90000 END),
       '{"action":"allow","reasons":[]}'
FROM (
    SELECT v, ms,
           CASE WHEN ms >= {RECENT_MS} THEN 'pending'
                WHEN h < 74 THEN 'approved' WHEN h < 95 THEN 'expired'
                WHEN h < 98 THEN 'max_attempts_reached' ELSE 'canceled' END AS status,
           CASE WHEN (v * 13) % 100 < 85 THEN 'sms' WHEN (v * 13) % 100 < 95 THEN 'whatsapp'
                ELSE 'voice' END AS channel
    FROM (
        SELECT v, {START_MS} + (v - 1) * {SPAN_MS} / {V} AS ms, (v * 2654435761) % 100 AS h
        FROM generate_series(1::bigint, {V}) AS v
    ) AS timed
    OFFSET 0
) AS drawn;

-- step 4.1: verification_codes
-- Each verification's codes (a second for one in ten), the approving one marked.
INSERT INTO verification_codes (verification_id, code_hash, created_at, message_id, approved_at)
SELECT bench_uuid(vms, v, '9'), sha256(int8send(n)), bench_ts(ms), bench_uuid(ms + 3, n, '8'),
       CASE WHEN last AND vms < {RECENT_MS} AND (v * 2654435761) % 100 < 74
            THEN bench_ts(vms + 4000 + (v * 7) % 90000) END
FROM (
    SELECT v, v AS n, {START_MS} + (v - 1) * {SPAN_MS} / {V} AS vms,
           {START_MS} + (v - 1) * {SPAN_MS} / {V} AS ms, v % 10 <> 0 AS last
    FROM generate_series(1::bigint, {V}) AS v
    UNION ALL
    SELECT v, {V} + v / 10, {START_MS} + (v - 1) * {SPAN_MS} / {V},
           {START_MS} + (v - 1) * {SPAN_MS} / {V} + 30000, true
    FROM generate_series(10::bigint, {V}, 10) AS v
) AS codes;

-- step 4.1: messages (codes)
-- Each verification's codes, sensitive (their bodies emptied once sent), at top priority.
INSERT INTO messages (id, "to", channel, template, body, segments, priority, status, api_key,
                      verification_id, send_before, provider_sid, error_code, error_message,
                      attempt_count, next_attempt_at, created_at, updated_at, price_amount,
                      price_currency, country, request_id, provider, sensitive, locale)
SELECT bench_uuid(ms, n, '8'), bench_to(v), channel,
       CASE channel WHEN 'voice' THEN 'two-factor-auth-voice' ELSE 'two-factor-auth' END,
       '', 1, 10, status, bench_api_key(v), bench_uuid(vms, v, '9'), bench_ts(vms + 600000),
       CASE WHEN status <> 'failed' THEN 'SM' || md5(n::text) END,
       CASE status WHEN 'failed' THEN '21211' WHEN 'undelivered' THEN '30003' END,
       CASE status WHEN 'failed' THEN 'Invalid ''To'' Phone Number'
                   WHEN 'undelivered' THEN 'Unreachable destination handset' END,
       1 + (n % 20 = 0)::int, bench_ts(ms), bench_ts(ms),
       bench_ts(ms + CASE WHEN status = 'failed' THEN 150 ELSE 2500 + (n * 7) % 6000 END),
       CASE WHEN status <> 'failed' THEN bench_price(bench_country(v), channel) END,
       CASE WHEN status <> 'failed' THEN 'USD' END,
       bench_country(v), to_hex(n * 7919), 
       CASE WHEN n % 20 = 7 THEN 'vonage' ELSE 'twilio' END, true,
       (ARRAY['en', 'en', 'en', 'de', 'fr', 'pt', 'hi'])[1 + n % 7]
FROM (
    SELECT v, n, vms, ms,
           CASE WHEN (v * 2654435761) % 100 < 74 THEN 'delivered'
                ELSE bench_message_status(n, ms) END AS status,
           CASE WHEN (v * 13) % 100 < 85 THEN 'sms' WHEN (v * 13) % 100 < 95 THEN 'whatsapp'
                ELSE 'voice' END AS channel
    FROM (
        SELECT v, v AS n, {START_MS} + (v - 1) * {SPAN_MS} / {V} AS vms,
               {START_MS} + (v - 1) * {SPAN_MS} / {V} + 3 AS ms
        FROM generate_series(1::bigint, {V}) AS v
        UNION ALL
        SELECT v, {V} + v / 10, {START_MS} + (v - 1) * {SPAN_MS} / {V},
               {START_MS} + (v - 1) * {SPAN_MS} / {V} + 30003
        FROM generate_series(10::bigint, {V}, 10) AS v
    ) AS timed
    OFFSET 0
) AS drawn;

-- step 4.2: messages (plain)
-- Notifications from templates or raw text, a fifth with an Idempotency-Key; bodies of the
-- last days still kept.
INSERT INTO messages (id, "to", channel, template, body, segments, priority, status, api_key,
                      idempotency_key, idempotency_fingerprint, provider_sid, error_code,
                      error_message, attempt_count, next_attempt_at, created_at, updated_at,
                      price_amount, price_currency, country, request_id, provider, sensitive)
SELECT bench_uuid(ms, n, '8'), bench_to(n), 'sms', template,
       CASE WHEN ms < {BODIES_MS} THEN '' ELSE 'Your order ' || n || ' has shipped and arrives tomorrow between 9 and 12.' END,
       1 + (n % 10 = 0)::int, 0, status, bench_api_key(n),
       CASE WHEN n % 5 = 0 THEN 'order-' || n END,
       CASE WHEN n % 5 = 0 THEN md5(n::text) END,
       CASE WHEN status <> 'failed' THEN 'SM' || md5(n::text) END,
       CASE status WHEN 'failed' THEN '21211' WHEN 'undelivered' THEN '30005' END,
       CASE status WHEN 'failed' THEN 'Invalid ''To'' Phone Number'
                   WHEN 'undelivered' THEN 'Unknown destination handset' END,
       1 + (n % 20 = 0)::int, bench_ts(ms), bench_ts(ms),
       bench_ts(ms + CASE WHEN status = 'failed' THEN 150 ELSE 2500 + (n * 7) % 6000 END),
       CASE WHEN status <> 'failed' THEN bench_price(bench_country(n), 'sms') END,
       CASE WHEN status <> 'failed' THEN 'USD' END,
       bench_country(n), to_hex(n * 7919),
       CASE WHEN n % 20 = 7 THEN 'vonage' ELSE 'twilio' END, false
FROM (
    SELECT n, ms, bench_message_status(n, ms) AS status,
           (ARRAY['order-shipped', 'appointment-reminder', 'two-factor-auth', NULL])[1 + n % 4]
               AS template
    FROM (
        SELECT {V} + {R} + p AS n, {START_MS} + (p - 1) * {SPAN_MS} / {P} + 7 AS ms
        FROM generate_series(1::bigint, {P}) AS p
    ) AS timed
    OFFSET 0
) AS drawn;

-- step 5.1: message_attempts
-- One attempt each, two for one in twenty (the first refused for a while by the provider).
INSERT INTO message_attempts (message_id, number, started_at, finished_at, outcome,
                              http_status, error_code, error_message, provider)
SELECT id, 1, created_at, created_at + interval '120 milliseconds',
       CASE WHEN attempt_count > 1 THEN 'retryable_error'
            WHEN status = 'failed' THEN 'permanent_error' ELSE 'sent' END,
       CASE WHEN attempt_count > 1 THEN 429 WHEN status = 'failed' THEN 400 ELSE 201 END,
       CASE WHEN attempt_count > 1 THEN '20429' WHEN status = 'failed' THEN '21211' END,
       CASE WHEN attempt_count > 1 THEN 'Too Many Requests'
            WHEN status = 'failed' THEN error_message END,
       provider
FROM messages
UNION ALL
SELECT id, 2, created_at + interval '2 seconds', created_at + interval '2120 milliseconds',
       CASE WHEN status = 'failed' THEN 'permanent_error' ELSE 'sent' END,
       CASE WHEN status = 'failed' THEN 400 ELSE 201 END,
       CASE WHEN status = 'failed' THEN '21211' END,
       CASE WHEN status = 'failed' THEN error_message END,
       provider
FROM messages WHERE attempt_count = 2;

-- step 5.2: message_events
-- The provider's final receipt of each message that has one, with its price.
INSERT INTO message_events (message_id, status, error_code, error_message, price_amount,
                            price_currency, received_at, idempotency_token)
SELECT id, status, error_code, error_message, price_amount, price_currency, updated_at,
       provider_sid || ':' || status
FROM messages WHERE status IN ('delivered', 'undelivered');

-- step 5.2: message_idempotency_keys
INSERT INTO message_idempotency_keys (api_key, idempotency_key, message_id)
SELECT api_key, idempotency_key, id FROM messages WHERE idempotency_key IS NOT NULL;

-- step 6.1: indexes (first half)
DO $$
DECLARE
    index record;
BEGIN
    FOR index IN SELECT * FROM bench_indexes
                 WHERE lane = 0 LOOP
        -- A partitioned table's index is described as ON ONLY the parent: built on each
        -- partition here.
        EXECUTE replace(index.definition, ' ON ONLY ', ' ON ');
    END LOOP;
END
$$;

-- step 6.2: indexes (second half)
DO $$
DECLARE
    index record;
BEGIN
    FOR index IN SELECT * FROM bench_indexes
                 WHERE lane = 1 LOOP
        -- A partitioned table's index is described as ON ONLY the parent: built on each
        -- partition here.
        EXECUTE replace(index.definition, ' ON ONLY ', ' ON ');
    END LOOP;
END
$$;

-- step 7.1: cleanup
DROP TABLE bench_indexes;
DROP FUNCTION bench_message_status, bench_api_key, bench_price, bench_to, bench_country,
    bench_ts, bench_uuid;
-- The history predates the rollups, as on a database upgraded to them: the service's first
-- fold, when it migrated the empty database, moved the watermark past every row made here,
-- which would leave them out of the rollups and the reports read empty hours.
UPDATE rollup_watermark SET folded_until = NULL;

-- step 8.1: statistics of messages
-- The planner's statistics, as autovacuum would have left them on a database that grew over
-- months.
ANALYZE messages;

-- step 8.2: statistics of the other tables
ANALYZE message_attempts, message_events, message_idempotency_keys, verifications,
    verification_codes;

-- step 9.1: vacuum of messages
-- What autovacuum would otherwise start on these tables during the figures (the visibility
-- map and hint bits of freshly inserted rows): timed apart from the generation.
VACUUM messages;

-- step 9.2: vacuum of the other tables
VACUUM message_attempts, message_events, message_idempotency_keys, verifications,
    verification_codes;
