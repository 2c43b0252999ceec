//! The reports' hourly rollups in SQLite, as PostgreSQL's `rollups`: the set-based fold of
//! whole hours, the fold of rows leaving before their hour was folded, and a delivery
//! receipt's change to a folded hour. Every write here runs in a transaction on the one writer
//! connection, so a fold and a change never interleave.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Amount, MessageStatus};
use ports::params::literals;
use ports::rollups::{fold_step, fold_target};
use ports::{latency_bucket_sql, FoldStep, StoreError};
use sqlx::SqliteConnection;

use crate::reports::PLAIN_PRICE;
use crate::rows::{instant, micros, store_error};
use crate::SqliteStore;

pub(crate) const HOUR_MICROS: i64 = 3_600_000_000;

/// The UTC hour of `column` (microseconds).
pub(crate) fn hour_of(column: &str) -> String {
    format!("(({column} / {HOUR_MICROS}) * {HOUR_MICROS})")
}

/// Rows of hours not folded yet (`created_at` at or after the watermark).
pub(crate) const UNFOLDED: &str =
    "created_at >= coalesce((SELECT folded_until FROM rollup_watermark), -9223372036854775807)";

/// The messages `FROM ... WHERE ...` selects, counted into `usage_rollups` (each figure times
/// `sign`), one row per hour and group; each price in units of 10^-8, summed in whole currency
/// units and the rest, as the report sums them; a price the report cannot read counts nothing.
pub(crate) fn fold_messages_sql(from_where: &str, sign: i64) -> String {
    format!(
        "INSERT INTO usage_rollups (hour, api_key, template, country, status, error_code, \
             currency, messages, segments, cost_whole, cost_rest) \
         SELECT hour, api_key, template, country, status, error_code, currency, \
                {sign} * count(*), {sign} * sum(segments), \
                {sign} * coalesce(sum(units / {per_whole}), 0), \
                {sign} * coalesce(sum(units % {per_whole}), 0) \
         FROM ( \
             SELECT {hour} AS hour, api_key, template, \
                    country, status, error_code, segments, \
                    CASE WHEN readable THEN price_currency END AS currency, \
                    CASE WHEN readable \
                        THEN CAST(round(CAST(price_amount AS REAL) * {per_whole}) AS INTEGER) \
                    END AS units \
             FROM ( \
                 SELECT *, (price_currency IS NOT NULL AND price_amount IS NOT NULL \
                            AND {PLAIN_PRICE}) AS readable \
                 {from_where} \
             ) \
         ) GROUP BY 1, 2, 3, 4, 5, 6, 7",
        hour = hour_of("created_at"),
        per_whole = Amount::UNITS_PER_WHOLE,
    )
}

/// The verifications `filter` (a condition on `v`) selects, each with what the conversion
/// report groups it by and how many of its codes a provider accepted.
pub(crate) fn started_sql(filter: &str) -> String {
    format!(
        r#"
    SELECT v.id, v.created_at, v.updated_at, v.api_key, v.channel, v.status,
           substr(v."to", 1, max(length(v."to") - 5, 2)) AS prefix,
           (SELECT m.country FROM messages m WHERE m.verification_id = v.id
            ORDER BY m.created_at LIMIT 1) AS country,
           (SELECT m.provider FROM messages m
            WHERE m.verification_id = v.id AND m.provider IS NOT NULL
            ORDER BY m.created_at LIMIT 1) AS provider,
           (SELECT count(*) FROM messages m
            WHERE m.verification_id = v.id AND m.status IN ({accepted})) AS codes
    FROM verifications v
    WHERE {filter}"#,
        accepted = literals(MessageStatus::ACCEPTED.map(MessageStatus::as_str)),
    )
}

/// Milliseconds from `from` to `to`, two timestamps.
pub(crate) fn millis(from: &str, to: &str) -> String {
    format!("max(0, ({to} - {from}) / 1000)")
}

/// The code messages of `started` delivered, each with its sending and receipt times.
pub(crate) const DELIVERED: &str = "\
    delivered AS ( \
        SELECT s.*, \
               (SELECT min(a.finished_at) FROM message_attempts a \
                WHERE a.message_id = m.id AND a.outcome IN ('sent', 'adopted')) AS sent_at, \
               (SELECT min(e.received_at) FROM message_events e \
                WHERE e.message_id = m.id AND e.status = 'delivered') AS receipt_at \
        FROM started s JOIN messages m ON m.verification_id = s.id \
        WHERE m.status = 'delivered' \
    )";

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

/// The code messages of `started` with a readable price, in units of 10^-8.
pub(crate) fn priced_sql() -> String {
    format!(
        "priced AS ( \
             SELECT s.*, m.price_currency AS currency, \
                    CAST(round(CAST(m.price_amount AS REAL) * {per_whole}) AS INTEGER) AS units \
             FROM started s JOIN messages m ON m.verification_id = s.id \
             WHERE m.price_currency IS NOT NULL AND {PLAIN_PRICE} \
         )",
        per_whole = Amount::UNITS_PER_WHOLE,
    )
}

/// The statements folding `started` (the `WITH` clause defining it) into the conversion
/// rollups, each figure times `sign`: once grouped by channel, country and provider, once by
/// prefix.
fn fold_conversion_sql(started: &str, sign: i64) -> Vec<String> {
    let hour = hour_of("created_at");
    let mut statements = Vec::new();
    for (by_prefix, dims, grouped) in [
        (
            0,
            "channel, country, provider, NULL",
            "channel, country, provider",
        ),
        (1, "NULL, NULL, NULL, prefix", "prefix"),
    ] {
        statements.push(format!(
            "{started} \
             INSERT INTO conversion_rollups (hour, by_prefix, api_key, channel, country, \
                 provider, prefix, started, codes_sent, approved) \
             SELECT {hour}, {by_prefix}, api_key, {dims}, {sign} * count(*), \
                    {sign} * coalesce(sum(codes), 0), \
                    {sign} * count(*) FILTER (WHERE status = 'approved') \
             FROM started GROUP BY {hour}, api_key, {grouped}"
        ));
        statements.push(format!(
            "{started}, {DELIVERED}, {timed} \
             INSERT INTO conversion_latency_rollups (hour, by_prefix, api_key, channel, \
                 country, provider, prefix, latency, bucket, count) \
             SELECT {hour}, {by_prefix}, api_key, {dims}, latency, {bucket}, {sign} * count(*) \
             FROM timed GROUP BY {hour}, api_key, {grouped}, latency, {bucket}",
            timed = timed_sql(),
            bucket = latency_bucket_sql("millis"),
        ));
        statements.push(format!(
            "{started}, {priced} \
             INSERT INTO conversion_cost_rollups (hour, by_prefix, api_key, channel, country, \
                 provider, prefix, currency, cost_whole, cost_rest) \
             SELECT {hour}, {by_prefix}, api_key, {dims}, currency, \
                    {sign} * sum(units / {per_whole}), {sign} * sum(units % {per_whole}) \
             FROM priced GROUP BY {hour}, api_key, {grouped}, currency",
            priced = priced_sql(),
            per_whole = Amount::UNITS_PER_WHOLE,
        ));
    }
    statements
}

/// Folds the verifications in the JSON array `ids` of hours not folded yet into the conversion
/// rollups (they are about to be removed); call before their messages go.
pub(crate) async fn fold_removed_verifications(
    connection: &mut SqliteConnection,
    ids: &str,
) -> Result<(), StoreError> {
    let started = format!(
        "WITH started AS ({})",
        started_sql(&format!(
            "v.id IN (SELECT value FROM json_each($1)) AND v.{UNFOLDED}"
        ))
    );
    for statement in fold_conversion_sql(&started, 1) {
        sqlx::query(&statement)
            .bind(ids)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// What of a message is in folded hours: its own hour (usage), its verification's (conversion).
#[derive(Debug, Clone, Default)]
pub(crate) struct Folded {
    message: bool,
    verification: Option<String>,
}

/// Whether message `id` (and its verification) lie in folded hours.
pub(crate) async fn folded(
    connection: &mut SqliteConnection,
    id: &str,
) -> Result<Folded, StoreError> {
    let row: Option<(Option<bool>, Option<String>)> = sqlx::query_as(
        "SELECT m.created_at < w.folded_until, \
                CASE WHEN v.created_at < w.folded_until THEN v.id END \
         FROM messages m CROSS JOIN rollup_watermark w \
         LEFT JOIN verifications v ON v.id = m.verification_id \
         WHERE m.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(
        row.map_or_else(Folded::default, |(message, verification)| Folded {
            message: message.unwrap_or(false),
            verification,
        }),
    )
}

/// Adds (`sign` 1) or takes off (-1) message `id`'s figures from the folded hours `folded`
/// says it lies in: taken off before a change, added after it, the change is counted.
pub(crate) async fn refold(
    connection: &mut SqliteConnection,
    id: &str,
    folded: &Folded,
    sign: i64,
) -> Result<(), StoreError> {
    if folded.message {
        sqlx::query(&fold_messages_sql("FROM messages WHERE id = $1", sign))
            .bind(id)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    if let Some(verification) = &folded.verification {
        let started = format!("WITH started AS ({})", started_sql("v.id = $1"));
        for statement in fold_conversion_sql(&started, sign) {
            sqlx::query(&statement)
                .bind(verification)
                .execute(&mut *connection)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(())
}

fn time(column: &str, value: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    value.map(|micros| instant(column, micros)).transpose()
}

impl SqliteStore {
    pub(crate) async fn watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let folded: Option<Option<i64>> =
            sqlx::query_scalar("SELECT folded_until FROM rollup_watermark")
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        time("folded_until", folded.flatten())
    }

    pub(crate) async fn fold(
        &self,
        now: DateTime<Utc>,
        settle: TimeDelta,
        max_hours: u32,
    ) -> Result<FoldStep, StoreError> {
        let mut transaction = self.begin_write().await?;
        let (watermark, open, pending, oldest): (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT (SELECT folded_until FROM rollup_watermark), \
                    (SELECT min(min(m.created_at, coalesce(v.created_at, m.created_at))) \
                     FROM messages m LEFT JOIN verifications v ON v.id = m.verification_id \
                     WHERE m.status IN ('queued', 'sending')), \
                    (SELECT min(created_at) FROM verifications \
                     WHERE status = 'pending' AND expires_at > $1), \
                    CASE WHEN (SELECT folded_until FROM rollup_watermark) IS NULL THEN \
                        min(coalesce((SELECT min(created_at) FROM messages), 9223372036854775807), \
                            coalesce((SELECT min(created_at) FROM verifications), \
                                     9223372036854775807)) END",
        )
        .bind(micros(now))
        .fetch_one(&mut *transaction)
        .await
        .map_err(store_error)?;
        let watermark = time("folded_until", watermark)?;
        let oldest = oldest.filter(|&oldest| oldest != i64::MAX);
        let target = fold_target(
            now,
            settle,
            time("created_at", open)?,
            time("created_at", pending)?,
        );
        let Some((from, to)) = fold_step(watermark, time("created_at", oldest)?, target, max_hours)
        else {
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
            .bind(micros(from))
            .bind(micros(to))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
            let started = format!(
                "WITH started AS ({})",
                started_sql("v.created_at >= $1 AND v.created_at < $2")
            );
            for statement in fold_conversion_sql(&started, 1) {
                sqlx::query(&statement)
                    .bind(micros(from))
                    .bind(micros(to))
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
        }
        sqlx::query("UPDATE rollup_watermark SET folded_until = $1")
            .bind(micros(to))
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
