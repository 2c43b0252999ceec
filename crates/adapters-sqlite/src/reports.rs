//! The message history read back: lists, usage reports and the counts behind the metrics, each
//! one aggregating query over the rollups of the folded hours and the raw rows after them
//! (`rollups`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Amount, Attempt, Message, MessageId, MessageStatus};
use ports::params::{self, literals, Param};
use ports::rollups::{raw_rows, RollupSplit, ROLLUP_ROWS};
use ports::{
    conversion_groups, latency_bucket_sql, rows, ConversionCount, ConversionGroup,
    ConversionGrouping, ConversionQuery, CostSum, ErrorCodeCount, HourFigures, MessageFilter,
    MessageReports, QueueStats, StatusCount, StoreError, StoreHealth, UsageGroup, UsageQuery,
};
use sqlx::Row as _;

use crate::rollups::{priced_sql, started_sql, timed_sql, DELIVERED};
use crate::rows::{all, json_ids, one, store_error};
use crate::SqliteStore;

/// The UTC day of `created_at`, `YYYY-MM-DD`, as reports group by it.
const DAY: &str = "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')";

/// `price_amount` is what `Amount` reads: an optional `-`, one to six digits, optionally a point
/// and one to eight digits (PostgreSQL says it with a regular expression). Any other stored
/// text counts nothing in a report rather than failing it or counting a wrong figure.
pub(crate) const PLAIN_PRICE: &str = "price_amount NOT GLOB '--*' \
     AND ltrim(price_amount, '-') GLOB '[0-9]*' \
     AND ltrim(price_amount, '-') NOT GLOB '*[^0-9.]*' \
     AND ltrim(price_amount, '-') NOT GLOB '*.*.*' \
     AND ltrim(price_amount, '-') NOT GLOB '*.' \
     AND instr(ltrim(price_amount, '-') || '.', '.') <= 7 \
     AND length(ltrim(price_amount, '-')) - instr(ltrim(price_amount, '-') || '.', '.') <= 8";

/// The messages of a report's split range ([`RollupSplit::params`]) as counted rows: each raw
/// message counts one, each rollup row what it folded (hours before the watermark, and the
/// messages retention or an erasure removed before their hour was folded).
fn counted() -> String {
    format!(
        "SELECT created_at, api_key, template, country, status, error_code, 1 AS messages, \
                segments \
         FROM messages WHERE {raw} AND ($3 IS NULL OR api_key = $3) \
         UNION ALL \
         SELECT hour, api_key, template, country, status, error_code, messages, segments \
         FROM usage_rollups WHERE {ROLLUP_ROWS} AND ($3 IS NULL OR api_key = $3)",
        raw = raw_rows("created_at"),
    )
}

/// The raw verifications of a conversion report's split range.
fn started_raw() -> String {
    started_sql(&format!(
        "{raw} AND ($3 IS NULL OR v.api_key = $3)",
        raw = raw_rows("v.created_at")
    ))
}

/// Rows of conversion rollup `table` in the split range, of the right set (`$7`: by prefix),
/// their hour as `created_at`, so that a group's expression reads them as raw rows.
fn conversion_rollups(table: &str) -> String {
    format!(
        "(SELECT hour AS created_at, * FROM {table} \
          WHERE by_prefix = $7 AND {ROLLUP_ROWS} AND ($3 IS NULL OR api_key = $3))"
    )
}

/// A report's parameters: the split range ([`RollupSplit::params`]) and, `$7`, whether the
/// conversion rollups grouped by prefix are read.
fn split_params<'a>(
    split: &RollupSplit,
    api_key: Option<&'a str>,
    by_prefix: bool,
) -> Vec<Param<'a>> {
    let mut params = split.params(api_key).to_vec();
    params.push(Param::Flag(by_prefix));
    params
}

/// Sums of prices in whole currency units and the rest: `key`, `currency`, `whole`, `rest`.
fn cost_sums(rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<CostSum>, StoreError> {
    rows.into_iter()
        .map(|row| {
            let whole: i64 = row.try_get("whole").map_err(store_error)?;
            let rest: i64 = row.try_get("rest").map_err(store_error)?;
            Ok(CostSum {
                key: row.try_get("key").map_err(store_error)?,
                currency: row.try_get("currency").map_err(store_error)?,
                total: Amount::from_units(
                    i128::from(whole) * Amount::UNITS_PER_WHOLE + i128::from(rest),
                ),
            })
        })
        .collect()
}

impl SqliteStore {
    async fn split(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<RollupSplit, StoreError> {
        Ok(RollupSplit::new(since, until, self.watermark().await?))
    }

    async fn usage_by(
        &self,
        key: &str,
        split: &RollupSplit,
        api_key: Option<&str>,
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let sql = format!(
            "WITH counted AS ({counted}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, sum(messages) AS messages, \
                        coalesce(sum(segments), 0) AS segments, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({delivered})), 0) \
                            AS delivered, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({failed})), 0) AS failed \
                 FROM counted GROUP BY 1 HAVING sum(messages) <> 0 \
             ) ORDER BY key IS NOT NULL, key",
            counted = counted(),
            delivered = literals(MessageStatus::DELIVERED.map(MessageStatus::as_str)),
            failed = literals(MessageStatus::NOT_DELIVERED.map(MessageStatus::as_str)),
        );
        let params = split.params(api_key);
        all(
            crate::rows::query(&sql, &params),
            &self.pool,
            rows::usage_group,
        )
        .await
    }

    async fn conversion_counts_by(
        &self,
        key: &str,
        split: &RollupSplit,
        api_key: Option<&str>,
        by_prefix: bool,
    ) -> Result<Vec<ConversionCount>, StoreError> {
        let sql = format!(
            "WITH started AS ({started}), \
             counted AS ( \
                 SELECT created_at, api_key, channel, country, provider, prefix, \
                        1 AS started, codes AS codes_sent, (status = 'approved') AS approved \
                 FROM started \
                 UNION ALL \
                 SELECT created_at, api_key, channel, country, provider, prefix, started, \
                        codes_sent, approved \
                 FROM {rollups} \
             ) \
             SELECT * FROM ( \
                 SELECT {key} AS key, sum(started) AS started, \
                        coalesce(sum(codes_sent), 0) AS codes_sent, sum(approved) AS approved \
                 FROM counted GROUP BY 1 HAVING sum(started) <> 0 \
             ) ORDER BY key IS NOT NULL, key",
            started = started_raw(),
            rollups = conversion_rollups("conversion_rollups"),
        );
        let params = split_params(split, api_key, by_prefix);
        all(
            crate::rows::query(&sql, &params),
            &self.pool,
            rows::conversion_count,
        )
        .await
    }

    async fn conversion_of(
        &self,
        query: &ConversionQuery,
    ) -> Result<Vec<ConversionGroup>, StoreError> {
        let key = query.group_by.column(DAY);
        let by_prefix = query.group_by == ConversionGrouping::Prefix;
        let split = self.split(query.since, query.until).await?;
        let api_key = query.api_key.as_deref();
        let counts = self
            .conversion_counts_by(key, &split, api_key, by_prefix)
            .await?;
        let params = split_params(&split, api_key, by_prefix);
        let latencies = format!(
            "WITH started AS ({started}), {DELIVERED}, {timed} \
             SELECT key, latency, bucket, sum(count) AS count FROM ( \
                 SELECT {key} AS key, latency, {bucket} AS bucket, 1 AS count FROM timed \
                 UNION ALL \
                 SELECT {key}, latency, bucket, count FROM {rollups} \
             ) GROUP BY 1, 2, 3 HAVING sum(count) <> 0",
            started = started_raw(),
            timed = timed_sql(),
            bucket = latency_bucket_sql("millis"),
            rollups = conversion_rollups("conversion_latency_rollups"),
        );
        let latencies = all(
            crate::rows::query(&latencies, &params),
            &self.pool,
            rows::latency_count,
        )
        .await?;
        // Summed in whole currency units and the rest, as the usage report sums the same
        // prices.
        let costs = format!(
            "WITH started AS ({started}), {priced} \
             SELECT key, currency, sum(whole) AS whole, sum(rest) AS rest FROM ( \
                 SELECT {key} AS key, currency, units / {per_whole} AS whole, \
                        units % {per_whole} AS rest \
                 FROM priced \
                 UNION ALL \
                 SELECT {key}, currency, cost_whole, cost_rest FROM {rollups} \
             ) GROUP BY 1, 2",
            started = started_raw(),
            priced = priced_sql(),
            per_whole = Amount::UNITS_PER_WHOLE,
            rollups = conversion_rollups("conversion_cost_rollups"),
        );
        let costs = crate::rows::query(&costs, &params)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(conversion_groups(counts, &latencies, &cost_sums(costs)?))
    }
}

#[async_trait]
impl MessageReports for SqliteStore {
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        // Only the conditions the filter sets (see `params::message_conditions`).
        let sql = format!(
            "SELECT * FROM messages WHERE {} ORDER BY created_at DESC, id DESC LIMIT $8",
            params::message_conditions(filter)
        );
        let page = crate::rows::query(&sql, &params::message_filter(filter));
        all(page, &self.pool, rows::message).await
    }

    async fn attempts_of(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<(MessageId, Attempt)>, StoreError> {
        let attempts = sqlx::query(
            "SELECT * FROM message_attempts \
             WHERE message_id IN (SELECT value FROM json_each($1)) \
             ORDER BY message_id, number, started_at, id",
        )
        .bind(json_ids(ids));
        all(attempts, &self.pool, rows::message_attempt).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, StoreError> {
        let split = self.split(query.since, query.until).await?;
        self.usage_by(query.group_by.column(DAY), &split, query.api_key.as_deref())
            .await
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Vec<CostSum>, StoreError> {
        // SQLite has no decimal type. Each price becomes whole units of 10^-8 (exact through a
        // REAL for six digits and eight decimals), summed in two integers, whole currency
        // units and the rest, which no number of rows overflows; the rollups hold the folded
        // and removed messages' sums in the same two parts.
        let sql = format!(
            "SELECT key, currency, sum(whole) AS whole, sum(rest) AS rest FROM ( \
                 SELECT {key} AS key, currency, units / {per_whole} AS whole, \
                        units % {per_whole} AS rest, 1 AS messages \
                 FROM ( \
                     SELECT created_at, api_key, template, country, status, \
                            price_currency AS currency, \
                            CAST(round(CAST(price_amount AS REAL) * {per_whole}) AS INTEGER) \
                                AS units \
                     FROM messages \
                     WHERE {raw} AND ($3 IS NULL OR api_key = $3) \
                       AND price_currency IS NOT NULL AND {PLAIN_PRICE} \
                 ) \
                 UNION ALL \
                 SELECT {key} AS key, currency, cost_whole, cost_rest, messages \
                 FROM (SELECT hour AS created_at, * FROM usage_rollups) \
                 WHERE {rollup_rows} AND ($3 IS NULL OR api_key = $3) AND currency IS NOT NULL \
             ) GROUP BY 1, 2 HAVING sum(messages) <> 0 ORDER BY key IS NOT NULL, key, currency",
            raw = raw_rows("created_at"),
            rollup_rows = ROLLUP_ROWS.replace("hour", "created_at"),
            key = query.group_by.column(DAY),
            per_whole = Amount::UNITS_PER_WHOLE,
        );
        let split = self.split(query.since, query.until).await?;
        let params = split.params(query.api_key.as_deref());
        let sums = crate::rows::query(&sql, &params)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        cost_sums(sums)
    }

    async fn error_codes(&self, query: &UsageQuery) -> Result<Vec<ErrorCodeCount>, StoreError> {
        let sql = format!(
            "WITH counted AS ({counted}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, error_code AS code, sum(messages) AS count \
                 FROM counted WHERE error_code IS NOT NULL \
                 GROUP BY 1, 2 HAVING sum(messages) <> 0 \
             ) ORDER BY key IS NOT NULL, key, count DESC, code",
            counted = counted(),
            key = query.group_by.column(DAY)
        );
        let split = self.split(query.since, query.until).await?;
        let params = split.params(query.api_key.as_deref());
        all(
            crate::rows::query(&sql, &params),
            &self.pool,
            rows::error_code_count,
        )
        .await
    }

    async fn conversion(
        &self,
        query: &ConversionQuery,
    ) -> Result<Vec<ConversionGroup>, StoreError> {
        self.conversion_of(query).await
    }

    async fn hourly(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, HourFigures)>, StoreError> {
        let split = self.split(since, until).await?;
        let key = "strftime('%Y-%m-%dT%H', created_at / 1000000, 'unixepoch')";
        let usage = self.usage_by(key, &split, None).await?;
        let conversion = self.conversion_counts_by(key, &split, None, false).await?;
        Ok(ports::rollups::hourly_series(&usage, &conversion))
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let counts = sqlx::query(
            "SELECT status, channel, count(*) AS count FROM messages GROUP BY status, channel \
             ORDER BY status, channel",
        );
        all(counts, &self.pool, rows::status_count).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let stats = sqlx::query(
            "SELECT \
                 (SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')) AS depth, \
                 (SELECT min(created_at) FROM messages WHERE status = 'queued') \
                     AS oldest_queued_at",
        );
        one(stats, &self.pool, rows::queue_stats).await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(sqlx::migrate!("../../migrations/sqlite")
            .iter()
            .filter(|migration| !applied.contains(&migration.version))
            .count())
    }
}
