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
use uuid::Uuid;

use crate::rollups::{delivered_sql, priced_sql, started_sql, timed_sql, Picked};
use crate::rows::{all, one, query, readable_price, store_error, Pg};
use crate::PgStore;

/// The UTC day of `created_at`, `YYYY-MM-DD`, as reports group by it.
const DAY: &str = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

/// The messages of a report's split range ([`RollupSplit::params`]) as counted rows: each raw
/// message counts one, each rollup row what it folded (hours before the watermark, and the
/// messages retention or an erasure removed before their hour was folded).
fn counted() -> String {
    format!(
        "SELECT created_at, api_key, template, country, status, error_code, \
                1::bigint AS messages, segments \
         FROM messages WHERE {raw} AND ($3::text IS NULL OR api_key = $3) \
         UNION ALL \
         SELECT hour, api_key, template, country, status, error_code, messages, segments \
         FROM usage_rollups WHERE {ROLLUP_ROWS} AND ($3::text IS NULL OR api_key = $3)",
        raw = raw_rows("created_at"),
    )
}

/// The raw verifications of a conversion report's split range.
fn started_raw() -> String {
    started_sql(&format!(
        "{raw} AND ($3::text IS NULL OR v.api_key = $3)",
        raw = raw_rows("v.created_at")
    ))
}

/// Rows of conversion rollup `table` in the split range, of the right set (`$7`: by prefix),
/// their hour as `created_at`, so that a group's expression reads them as raw rows.
fn conversion_rollups(table: &str) -> String {
    format!(
        "(SELECT hour AS created_at, * FROM {table} \
          WHERE by_prefix = $7 AND {ROLLUP_ROWS} AND ($3::text IS NULL OR api_key = $3)) AS r"
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

/// An exact sum of prices read back from its text: `key`, `currency`, `units`.
fn cost_sum(row: &Pg) -> Result<CostSum, StoreError> {
    let row = &row.0;
    let key: Option<String> = row.try_get("key").map_err(store_error)?;
    let currency: String = row.try_get("currency").map_err(store_error)?;
    let units: String = row.try_get("units").map_err(store_error)?;
    let units = units
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("a sum of prices is not a number: {units}")))?;
    Ok(CostSum {
        key,
        currency,
        total: Amount::from_units(units),
    })
}

impl PgStore {
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
                 SELECT {key} AS key, sum(messages)::bigint AS messages, \
                        coalesce(sum(segments), 0)::bigint AS segments, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({delivered})), 0)::bigint \
                            AS delivered, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({failed})), 0)::bigint \
                            AS failed \
                 FROM counted GROUP BY 1 HAVING sum(messages) <> 0 \
             ) AS groups ORDER BY key IS NOT NULL, key",
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
                        1::bigint AS started, codes AS codes_sent, \
                        (status = 'approved')::int::bigint AS approved \
                 FROM started \
                 UNION ALL \
                 SELECT created_at, api_key, channel, country, provider, prefix, started, \
                        codes_sent, approved \
                 FROM {rollups} \
             ) \
             SELECT * FROM ( \
                 SELECT {key} AS key, sum(started)::bigint AS started, \
                        coalesce(sum(codes_sent), 0)::bigint AS codes_sent, \
                        sum(approved)::bigint AS approved \
                 FROM counted GROUP BY 1 HAVING sum(started) <> 0 \
             ) AS groups ORDER BY key IS NOT NULL, key",
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
        let params = split_params(&split, api_key, by_prefix);
        let latencies = format!(
            "WITH started AS ({started}), {delivered}, {timed} \
             SELECT key, latency, bucket, sum(count)::bigint AS count FROM ( \
                 SELECT {key} AS key, latency, {bucket} AS bucket, 1::bigint AS count \
                 FROM timed \
                 UNION ALL \
                 SELECT {key}, latency, bucket, count FROM {rollups} \
             ) AS timed GROUP BY 1, 2, 3 HAVING sum(count) <> 0",
            started = started_raw(),
            delivered = delivered_sql(Picked::Few),
            timed = timed_sql(),
            bucket = latency_bucket_sql("millis"),
            rollups = conversion_rollups("conversion_latency_rollups"),
        );
        // Summed exactly as the usage report sums the same prices.
        let costs = format!(
            "WITH started AS ({started}), {priced} \
             SELECT key, currency, round(sum(cost) * {units})::text AS units FROM ( \
                 SELECT {key} AS key, currency, cost FROM priced \
                 UNION ALL \
                 SELECT {key}, currency, cost FROM {rollups} \
             ) AS costs GROUP BY 1, 2",
            started = started_raw(),
            priced = priced_sql(Picked::Few),
            units = Amount::UNITS_PER_WHOLE,
            rollups = conversion_rollups("conversion_cost_rollups"),
        );
        // Three statements on three connections at once: a report waits for the slowest,
        // not for their sum (each reads its own snapshot, as one after the other did).
        let (counts, latencies, costs) = tokio::try_join!(
            self.conversion_counts_by(key, &split, api_key, by_prefix),
            all(
                crate::rows::query(&latencies, &params),
                &self.pool,
                rows::latency_count,
            ),
            all(crate::rows::query(&costs, &params), &self.pool, cost_sum),
        )?;
        Ok(conversion_groups(counts, &latencies, &costs))
    }
}

#[async_trait]
impl MessageReports for PgStore {
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        // Only the conditions the filter sets (see `params::message_conditions`).
        let sql = format!(
            "SELECT * FROM messages WHERE {} ORDER BY created_at DESC, id DESC LIMIT $8",
            params::message_conditions(filter)
        );
        let page = query(&sql, &params::message_filter(filter));
        all(page, &self.pool, rows::message).await
    }

    async fn attempts_of(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<(MessageId, Attempt)>, StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(MessageId::as_uuid).collect();
        let attempts = sqlx::query(
            "SELECT * FROM message_attempts WHERE message_id = ANY($1) \
             ORDER BY message_id, number, started_at, id",
        )
        .bind(ids);
        all(attempts, &self.pool, rows::message_attempt).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, StoreError> {
        let split = self.split(query.since, query.until).await?;
        self.usage_by(query.group_by.column(DAY), &split, query.api_key.as_deref())
            .await
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Vec<CostSum>, StoreError> {
        // Summed as numeric, exactly and without overflow; a stored price that is not a plain
        // decimal within `Amount`'s bounds counts nothing rather than failing the report. The
        // rollups hold the exact sums of the folded and removed messages' readable prices.
        let sql = format!(
            "WITH priced AS ( \
                 SELECT created_at, api_key, template, country, status, \
                        price_currency AS currency, price_amount::numeric AS cost, \
                        1::bigint AS messages \
                 FROM messages \
                 WHERE {raw} AND ($3::text IS NULL OR api_key = $3) \
                   AND {readable} \
                   AND price_currency IS NOT NULL \
                 UNION ALL \
                 SELECT hour, api_key, template, country, status, currency, cost, messages \
                 FROM usage_rollups \
                 WHERE {ROLLUP_ROWS} AND ($3::text IS NULL OR api_key = $3) \
                   AND currency IS NOT NULL \
             ) \
             SELECT * FROM ( \
                 SELECT {key} AS key, currency, round(sum(cost) * {units})::text AS units \
                 FROM priced GROUP BY 1, 2 HAVING sum(messages) <> 0 \
             ) AS costs ORDER BY key IS NOT NULL, key, currency",
            raw = raw_rows("created_at"),
            key = query.group_by.column(DAY),
            units = Amount::UNITS_PER_WHOLE,
            readable = readable_price("price_amount"),
        );
        let split = self.split(query.since, query.until).await?;
        let params = split.params(query.api_key.as_deref());
        all(crate::rows::query(&sql, &params), &self.pool, cost_sum).await
    }

    async fn error_codes(&self, query: &UsageQuery) -> Result<Vec<ErrorCodeCount>, StoreError> {
        let sql = format!(
            "WITH counted AS ({counted}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, error_code AS code, sum(messages)::bigint AS count \
                 FROM counted WHERE error_code IS NOT NULL \
                 GROUP BY 1, 2 HAVING sum(messages) <> 0 \
             ) AS codes ORDER BY key IS NOT NULL, key, count DESC, code",
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
        let key = "to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), \
                   'YYYY-MM-DD\"T\"HH24')";
        // At once, as the conversion report's statements.
        let (usage, conversion) = tokio::try_join!(
            self.usage_by(key, &split, None),
            self.conversion_counts_by(key, &split, None, false),
        )?;
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
impl StoreHealth for PgStore {
    async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(sqlx::migrate!("../../migrations/postgres")
            .iter()
            .filter(|migration| !applied.contains(&migration.version))
            .count())
    }
}
