//! The reports' hourly rollups on PostgreSQL: the set-based fold of whole hours, the fold of
//! rows leaving before their hour was folded (retention, erasure), and the change a delivery
//! receipt makes to a folded hour (its message's and verification's figures taken off before,
//! added after). Folds hold an exclusive advisory lock for their transaction; everything that
//! decides by the watermark holds it shared, so no change slips between a fold's reading of
//! the rows and its moving of the watermark.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{MessageStatus, Verification};
use ports::params::literals;
use ports::rollups::{fold_step, fold_target};
use ports::{latency_bucket_sql, FoldStep, StoreError};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::{readable_price, store_error};
use crate::verifications::CLOCK_SKEW;
use crate::PgStore;

/// The advisory lock of the rollups (any constant; no other lock of this schema uses it).
const LOCK: i64 = 0x726f_6c6c_7570;

/// Begins a transaction holding [`LOCK`] shared (see [`hold_shared`]), in one round trip.
pub(crate) const BEGIN_HOLDING_SHARED: &str =
    "BEGIN; SELECT pg_advisory_xact_lock_shared(125822885983600)";

/// The UTC hour of `column`, a `timestamptz`.
pub(crate) fn hour_of(column: &str) -> String {
    format!("(date_trunc('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
}

/// Rows of hours not folded yet (`created_at` at or after the watermark).
pub(crate) const UNFOLDED: &str =
    "created_at >= coalesce((SELECT folded_until FROM rollup_watermark), '-infinity')";

/// The messages `FROM ... WHERE ...` selects, counted into `usage_rollups` (each figure times
/// `sign`), one row per hour and group; a price summed exactly when it is a plain decimal, as
/// the report reads it. The messages are counted per price first, so that each distinct price
/// (a few per country), not each message, is tested and parsed.
pub(crate) fn fold_messages_sql(from_where: &str, sign: i64) -> String {
    format!(
        r#"
    INSERT INTO usage_rollups (hour, api_key, template, country, status, error_code, currency,
                               messages, segments, cost)
    SELECT hour, api_key, template, country, status, error_code,
           CASE WHEN readable THEN price_currency END,
           {sign} * sum(messages), {sign} * sum(segments),
           {sign} * coalesce(sum(CASE WHEN readable THEN price_amount::numeric * messages END), 0)
    FROM (
        SELECT *, (price_currency IS NOT NULL AND {readable}) AS readable
        FROM (
            SELECT {hour} AS hour, api_key, template, country, status, error_code,
                   price_currency, price_amount, count(*) AS messages, sum(segments) AS segments
            {from_where}
            GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ) AS counted
    ) AS priced
    GROUP BY 1, 2, 3, 4, 5, 6, 7"#,
        hour = hour_of("created_at"),
        readable = readable_price("price_amount"),
    )
}

/// The verifications `filter` (a condition on `v`) selects, each with what the conversion
/// report groups it by, how many of its codes a provider accepted, and the ids its messages can
/// have (between the times `messages_from` and `messages_until`). Their messages are read once
/// for all of them, only from the weeks those ids span: a lookup per verification opened every
/// week's partition again for each one (docs/performance.md, "The fold and the reports on the
/// full history").
pub(crate) fn started_sql(filter: &str) -> String {
    let (from, until) = messages_from_to();
    format!(
        r#"
    WITH chosen AS MATERIALIZED (
        SELECT v.*, {from} AS messages_from, {until} AS messages_until
        FROM verifications v WHERE {filter}
    ),
    codes AS (
        SELECT m.verification_id,
               (array_agg(m.country ORDER BY m.created_at))[1] AS country,
               (array_agg(m.provider ORDER BY m.created_at)
                    FILTER (WHERE m.provider IS NOT NULL))[1] AS provider,
               count(*) FILTER (WHERE m.status IN ({accepted})) AS codes
        FROM {messages}
        GROUP BY m.verification_id
    )
    SELECT v.id, v.created_at, v.updated_at, v.api_key, v.channel, v.status,
           substr(v."to", 1, greatest(length(v."to") - 5, 2)) AS prefix,
           c.country, c.provider, coalesce(c.codes, 0) AS codes,
           v.messages_from, v.messages_until
    FROM chosen v LEFT JOIN codes c ON c.verification_id = v.id"#,
        accepted = literals(MessageStatus::ACCEPTED.map(MessageStatus::as_str)),
        messages = messages_of_verifications("chosen", Picked::Few),
    )
}

/// The times between which a verification's messages are minted (UUIDv7, by the machine's
/// clock): after it and while it could be pending, give or take the clocks' skew. Both its id's
/// time and its `created_at` (the service's clock, which a test may set) widen the range, so
/// that either clock keeps every message in.
fn messages_from_to() -> (String, String) {
    let skew = CLOCK_SKEW.num_seconds();
    let lifetime = Verification::LONGEST_LIFETIME.num_seconds();
    (
        format!("least(sms_notify_uuid_time(v.id), v.created_at) - interval '{skew} seconds'"),
        format!(
            "greatest(sms_notify_uuid_time(v.id), v.created_at) \
             + interval '{lifetime} seconds' + interval '{skew} seconds'"
        ),
    )
}

/// `column` (a message's id) within the ids the messages of every verification of `started`
/// can have: the bounds are computed before the statement runs, so that PostgreSQL reads only
/// the partitions between them.
fn messages_of(started: &str, column: &str) -> String {
    format!(
        "{column} >= sms_notify_uuid_at((SELECT min(messages_from) FROM {started})) \
         AND {column} < sms_notify_uuid_at((SELECT max(messages_until) FROM {started}))"
    )
}

/// How a statement picks the messages of its verifications `started`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Picked {
    /// As the messages of (`IN`) those verifications, which the planner expects to be few: a
    /// report's raw verifications, or the one a receipt changes, then look their messages up
    /// by index rather than read every message of the hours between them (a plain join
    /// expected thousands and hashed them all).
    Few,
    /// Every message between their bounds, joined to them afterwards: a fold of whole weeks
    /// reads nearly all of those anyway, and the semi-join only added its own hashing.
    Week,
}

/// The messages `m` of the verifications of `started` (which holds their bounds), read only
/// from the weeks their ids can lie in, picked as `picked` says; the caller joins them to
/// `started` when it picks a week's.
fn messages_of_verifications(started: &str, picked: Picked) -> String {
    let bounds = messages_of(started, "m.id");
    match picked {
        Picked::Few => {
            format!("messages m WHERE m.verification_id IN (SELECT id FROM {started}) AND {bounds}")
        }
        Picked::Week => format!("messages m WHERE {bounds}"),
    }
}

/// Milliseconds from `from` to `to`, two timestamps.
pub(crate) fn millis(from: &str, to: &str) -> String {
    format!("greatest(0, (extract(epoch FROM ({to} - {from})) * 1000)::bigint)")
}

/// The code messages of `started` delivered, each with its sending and receipt times. When
/// they are `Few`, only their own attempts and receipts are grouped, so that a report whose raw
/// rows lie days apart (the start of its first hour, the hours after the watermark) looks up a
/// few messages' rows instead of grouping every message's between them; the ids' bounds still
/// limit the weeks read.
pub(crate) fn delivered_sql(picked: Picked) -> String {
    let theirs = match picked {
        Picked::Few => "AND message_id IN (SELECT message_id FROM delivered_codes)",
        Picked::Week => "",
    };
    let earliest = |column: &str, table: &str, condition: &str, name: &str| {
        format!(
            "LEFT JOIN (SELECT message_id, min({column}) AS {name} FROM {table} \
                        WHERE {condition} AND {by_message} {theirs} \
                        GROUP BY message_id) AS {name} USING (message_id)",
            by_message = messages_of("started", "message_id"),
        )
    };
    format!(
        "delivered_codes AS ( \
             SELECT s.*, m.id AS message_id FROM {codes} \
         ), \
         delivered AS ( \
             SELECT d.*, sent_at, receipt_at FROM delivered_codes d {sent} {receipt} \
         )",
        codes = codes_of_started("m.status = 'delivered'", picked),
        sent = earliest(
            "finished_at",
            "message_attempts",
            "outcome IN ('sent', 'adopted')",
            "sent_at"
        ),
        receipt = earliest(
            "received_at",
            "message_events",
            "status = 'delivered'",
            "receipt_at"
        ),
    )
}

/// Each approval and delivery latency of `started` (and `delivered`), with its group columns.
pub(crate) fn timed_sql() -> String {
    format!(
        "timed AS ( \
             SELECT created_at, api_key, channel, country, provider, prefix, \
                    'approval' AS latency, {approval} AS millis \
             FROM started WHERE status = 'approved' \
             UNION ALL \
             SELECT created_at, api_key, channel, country, provider, prefix, 'delivery', \
                    {delivery} \
             FROM delivered WHERE sent_at IS NOT NULL AND receipt_at IS NOT NULL \
         )",
        approval = millis("created_at", "updated_at"),
        delivery = millis("sent_at", "receipt_at"),
    )
}

/// The code messages of `started` with a readable price.
pub(crate) fn priced_sql(picked: Picked) -> String {
    format!(
        "priced AS ( \
             SELECT s.*, m.price_currency AS currency, m.price_amount::numeric AS cost \
             FROM {codes} \
         )",
        codes = codes_of_started(
            &format!(
                "m.price_currency IS NOT NULL AND {}",
                readable_price("m.price_amount")
            ),
            picked,
        ),
    )
}

/// `started s` joined with its code messages `m` that meet `condition`.
fn codes_of_started(condition: &str, picked: Picked) -> String {
    format!(
        "started s JOIN (SELECT * FROM {messages} AND {condition}) AS m \
             ON m.verification_id = s.id",
        messages = messages_of_verifications("started", picked),
    )
}

/// The three statements folding `started` (the `WITH` clause defining it) into the conversion
/// rollups, each figure times `sign`: grouped once by channel, country and provider and once by
/// prefix (`GROUPING SETS`).
fn fold_conversion_sql(started: &str, picked: Picked, sign: i64) -> [String; 3] {
    let hour = hour_of("created_at");
    let sets = |extra: &str| {
        format!(
            "GROUPING SETS ((hour, api_key, channel, country, provider{extra}), \
                            (hour, api_key, prefix{extra}))"
        )
    };
    [
        format!(
            "{started} \
             INSERT INTO conversion_rollups (hour, by_prefix, api_key, channel, country, \
                 provider, prefix, started, codes_sent, approved) \
             SELECT hour, GROUPING(prefix) = 0, api_key, channel, country, provider, prefix, \
                    {sign} * count(*), {sign} * coalesce(sum(codes), 0), \
                    {sign} * count(*) FILTER (WHERE status = 'approved') \
             FROM (SELECT *, {hour} AS hour FROM started) AS s GROUP BY {sets}",
            sets = sets(""),
        ),
        format!(
            "{started}, {delivered}, {timed} \
             INSERT INTO conversion_latency_rollups (hour, by_prefix, api_key, channel, \
                 country, provider, prefix, latency, bucket, count) \
             SELECT hour, GROUPING(prefix) = 0, api_key, channel, country, provider, prefix, \
                    latency, bucket, {sign} * count(*) \
             FROM (SELECT *, {hour} AS hour, {bucket} AS bucket FROM timed) AS t \
             GROUP BY {sets}",
            delivered = delivered_sql(picked),
            timed = timed_sql(),
            bucket = latency_bucket_sql("millis"),
            sets = sets(", latency, bucket"),
        ),
        format!(
            "{started}, {priced} \
             INSERT INTO conversion_cost_rollups (hour, by_prefix, api_key, channel, country, \
                 provider, prefix, currency, cost) \
             SELECT hour, GROUPING(prefix) = 0, api_key, channel, country, provider, prefix, \
                    currency, {sign} * sum(cost) \
             FROM (SELECT *, {hour} AS hour FROM priced) AS p GROUP BY {sets}",
            priced = priced_sql(picked),
            sets = sets(", currency"),
        ),
    ]
}

/// Holds the rollups' lock shared until the transaction ends: a fold waits, and then sees
/// what this transaction wrote.
pub(crate) async fn hold_shared(connection: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(LOCK)
        .execute(connection)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Folds the verifications `ids` of hours not folded yet into the conversion rollups (they are
/// about to be removed); call before their messages go.
pub(crate) async fn fold_removed_verifications(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    let started = format!(
        "WITH started AS ({})",
        started_sql(&format!("v.id = ANY($1) AND v.{UNFOLDED}"))
    );
    for statement in fold_conversion_sql(&started, Picked::Few, 1) {
        sqlx::query(&statement)
            .bind(ids)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// What of a message is in folded hours: its own hour (usage), its verification's (conversion).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Folded {
    pub(crate) message: bool,
    pub(crate) verification: Option<Uuid>,
}

/// Adds (`sign` 1) or takes off (-1) message `id`'s figures from the folded hours `folded`
/// says it lies in: taken off before a change, added after it, the change is counted.
pub(crate) async fn refold(
    connection: &mut PgConnection,
    id: Uuid,
    folded: Folded,
    sign: i64,
) -> Result<(), StoreError> {
    if folded.message {
        sqlx::query(&fold_messages_sql("FROM messages WHERE id = $1", sign))
            .bind(id)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    if let Some(verification) = folded.verification {
        let started = format!("WITH started AS ({})", started_sql("v.id = $1"));
        for statement in fold_conversion_sql(&started, Picked::Few, sign) {
            sqlx::query(&statement)
                .bind(verification)
                .execute(&mut *connection)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(())
}

/// What a fold starts from: the watermark, the oldest open message (or its verification), the
/// oldest pending verification, and (before the first fold) the oldest row.
type Bounds = (
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

impl PgStore {
    pub(crate) async fn watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT folded_until FROM rollup_watermark")
            .fetch_optional(&self.pool)
            .await
            .map(Option::flatten)
            .map_err(store_error)
    }

    pub(crate) async fn fold(
        &self,
        now: DateTime<Utc>,
        settle: TimeDelta,
        max_hours: u32,
    ) -> Result<FoldStep, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        let (watermark, open, pending, oldest): Bounds = sqlx::query_as(
            "SELECT (SELECT folded_until FROM rollup_watermark), \
                    (SELECT min(least(m.created_at, v.created_at)) FROM messages m \
                     LEFT JOIN verifications v ON v.id = m.verification_id \
                     WHERE m.status IN ('queued', 'sending')), \
                    (SELECT min(created_at) FROM verifications \
                     WHERE status = 'pending' AND expires_at > $1), \
                    CASE WHEN (SELECT folded_until FROM rollup_watermark) IS NULL THEN \
                        least((SELECT min(created_at) FROM messages), \
                              (SELECT min(created_at) FROM verifications)) END",
        )
        .bind(now)
        .fetch_one(&mut *transaction)
        .await
        .map_err(store_error)?;
        let target = fold_target(now, settle, open, pending);
        let Some((from, to)) = fold_step(watermark, oldest, target, max_hours) else {
            return Ok(FoldStep {
                watermark,
                hours: 0,
                caught_up: true,
            });
        };
        if to > from {
            sqlx::query(&fold_messages_sql(
                "FROM messages WHERE created_at >= $1 AND created_at < $2",
                1,
            ))
            .bind(from)
            .bind(to)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
            // For the conversion rollups of a week of rows: the default work_mem spilled their
            // sorts and hashes to disk, and the planner, which cannot count the rows of a
            // `WITH` query, looked up each verification's messages in every week's index
            // rather than joining them once (docs/performance.md, "JIT, and the fold's
            // settings"). Both settings end with the transaction; the usage rollups, above,
            // were slower with them (a sort on disk where a hash fit).
            for setting in [
                "SET LOCAL work_mem = '64MB'",
                "SET LOCAL enable_nestloop = off",
            ] {
                sqlx::query(setting)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
            // The verifications once, then each rollup read from them.
            // A utility statement takes no parameters: the bounds are the fold's own times.
            sqlx::query(&format!(
                "CREATE TEMPORARY TABLE rollup_started ON COMMIT DROP AS {}",
                started_sql(&format!(
                    "v.created_at >= '{}'::timestamptz AND v.created_at < '{}'::timestamptz",
                    from.to_rfc3339(),
                    to.to_rfc3339()
                ))
            ))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
            for statement in fold_conversion_sql(
                "WITH started AS (SELECT * FROM rollup_started)",
                Picked::Week,
                1,
            ) {
                sqlx::query(&statement)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
        }
        sqlx::query("UPDATE rollup_watermark SET folded_until = $1")
            .bind(to)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(FoldStep {
            watermark: Some(to),
            hours: u64::try_from((to - from).num_hours()).unwrap_or_default(),
            caught_up: to >= target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_begin_takes_the_rollups_lock() {
        let statement = format!("BEGIN; SELECT pg_advisory_xact_lock_shared({LOCK})");
        assert_eq!(BEGIN_HOLDING_SHARED, statement);
    }
}
