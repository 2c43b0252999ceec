-- The dispatcher's batched finish (crates/adapters-postgres/src/messages.rs, `Finishes`) as a
-- function whose plan is generic. As a prepared statement PostgreSQL planned it again on every
-- call: a generic plan's estimate counts every week's partition of `messages` (those of other
-- weeks are pruned only as it runs), so each custom plan, planned for the week its ids bound,
-- looked cheaper, and every call paid a planning that cost more than the generic plan's start
-- (more weeks, more planning: docs/performance.md, "The finish planned on every call").
-- Without sequential scans, as the send limits' functions (0041): a generic plan made on a new
-- database's tiny tables is kept by the connection as they grow.
CREATE FUNCTION sms_notify_finish(uuid[], uuid[], text[], text[], text[], int8[], text[],
    text[], bool[], text[], text[], timestamptz[], bool[], timestamptz[], uuid[], uuid[],
    int8[], timestamptz[], timestamptz[], text[], int4[], text[], text[], text[], text[],
    uuid, uuid)
RETURNS TABLE (recorded_id uuid, recorded_claim uuid)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
BEGIN
    -- The attempt is written only for the messages whose claim held, in the same statement,
    -- so that both are committed together. Claims are matched as well as ids: a batch may
    -- hold a lapsed claim's finish beside the new claim's. `$26` and `$27` bound the ids.
    RETURN QUERY
    WITH outcome AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
            $5::text[], $6::int8[], $7::text[], $8::text[], $9::bool[], $10::text[],
            $11::text[], $12::timestamptz[], $13::bool[], $14::timestamptz[])
          AS o (id, claim_token, status, provider, provider_sid, segments,
            price_amount, price_currency, replace_error, error_code, error_message,
            next_attempt_at, forget_body, now)
    ),
    recorded AS (
        UPDATE messages AS m
        SET status = o.status,
            provider = COALESCE(o.provider, m.provider),
            provider_sid = COALESCE(o.provider_sid, m.provider_sid),
            segments = COALESCE(o.segments, m.segments),
            price_amount = COALESCE(o.price_amount, m.price_amount),
            price_currency = COALESCE(o.price_currency, m.price_currency),
            error_code = CASE WHEN o.replace_error THEN o.error_code
                ELSE m.error_code END,
            error_message = CASE WHEN o.replace_error THEN o.error_message
                ELSE m.error_message END,
            next_attempt_at = COALESCE(o.next_attempt_at, m.next_attempt_at),
            body = CASE WHEN o.forget_body
                    AND (m.sensitive OR m.verification_id IS NOT NULL)
                THEN '' ELSE m.body END,
            locked_until = NULL, claim_token = NULL, updated_at = o.now
        FROM outcome AS o
        -- Naming the status (which a claim token implies, by a CHECK) keeps the
        -- plan that figure 1 of the benchmark measured fastest.
        WHERE m.id = o.id AND m.claim_token = o.claim_token
          AND m.status = 'sending' AND m.id >= $26 AND m.id <= $27
        RETURNING m.id, o.claim_token
    ),
    attempts AS (
        INSERT INTO message_attempts (message_id, number, started_at, finished_at,
            outcome, http_status, error_code, error_message, provider, traceparent)
        SELECT a.id, a.number, a.started_at, a.finished_at, a.outcome, a.http_status,
            a.error_code, a.error_message, a.provider, a.traceparent
        FROM unnest($15::uuid[], $16::uuid[], $17::int8[], $18::timestamptz[],
            $19::timestamptz[], $20::text[], $21::int4[], $22::text[], $23::text[],
            $24::text[], $25::text[])
          AS a (id, claim_token, number, started_at, finished_at, outcome,
            http_status, error_code, error_message, provider, traceparent)
        WHERE (a.id, a.claim_token) IN (SELECT id, claim_token FROM recorded)
    )
    SELECT id, claim_token FROM recorded;
END
$$;
