//! The message history read back: lists, usage reports and the counts behind the metrics, each
//! one aggregating query.

use async_trait::async_trait;
use domain::{Amount, Attempt, Message, MessageId, MessageStatus};
use ports::params::{self, literals};
use ports::{
    rows, CostSum, ErrorCodeCount, MessageFilter, MessageReports, QueueStats, StatusCount,
    StoreError, StoreHealth, UsageGroup, UsageQuery,
};
use uuid::Uuid;

use crate::rows::{all, one, query, store_error};
use crate::PgStore;

/// The UTC day of `created_at`, `YYYY-MM-DD`, as reports group by it.
const DAY: &str = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')";

/// The messages of a report's range (`$1`, `$2`, optionally only API key `$3`) as counted rows:
/// each stored message counts one, and each rollup of the messages retention or an erasure
/// removed counts what it folded (a rollup belongs to the range when its hour starts in it).
const COUNTED: &str = "\
    SELECT created_at, api_key, template, country, status, error_code, \
           1::bigint AS messages, segments \
    FROM messages WHERE created_at >= $1 AND created_at < $2 \
      AND ($3::text IS NULL OR api_key = $3) \
    UNION ALL \
    SELECT hour, api_key, template, country, status, error_code, messages, segments \
    FROM usage_rollups WHERE hour >= $1 AND hour < $2 \
      AND ($3::text IS NULL OR api_key = $3)";

#[async_trait]
impl MessageReports for PgStore {
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        let page = query(
            r#"SELECT * FROM messages
               WHERE api_key = $1
                 AND ($2::text IS NULL OR status = $2)
                 AND ($3::text IS NULL OR "to" = $3)
                 AND ($4::timestamptz IS NULL OR created_at >= $4)
                 AND ($5::timestamptz IS NULL OR created_at < $5)
                 AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::uuid))
               ORDER BY created_at DESC, id DESC
               LIMIT $8"#,
            &params::message_filter(filter),
        );
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
        let sql = format!(
            "WITH counted AS ({COUNTED}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, sum(messages)::bigint AS messages, \
                        coalesce(sum(segments), 0)::bigint AS segments, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({delivered})), 0)::bigint \
                            AS delivered, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({failed})), 0)::bigint \
                            AS failed \
                 FROM counted GROUP BY 1 \
             ) AS groups ORDER BY key IS NOT NULL, key",
            key = query.group_by.column(DAY),
            delivered = literals(MessageStatus::DELIVERED.map(MessageStatus::as_str)),
            failed = literals(MessageStatus::NOT_DELIVERED.map(MessageStatus::as_str)),
        );
        let range = params::usage_range(query);
        all(
            crate::rows::query(&sql, &range),
            &self.pool,
            rows::usage_group,
        )
        .await
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Vec<CostSum>, StoreError> {
        // Summed as numeric, exactly and without overflow; a stored price that is not a plain
        // decimal within `Amount`'s bounds counts nothing rather than failing the report. The
        // rollups hold the exact sums of the removed messages' readable prices.
        let sql = format!(
            "WITH priced AS ( \
                 SELECT created_at, api_key, template, country, status, \
                        price_currency AS currency, price_amount::numeric AS cost \
                 FROM messages \
                 WHERE created_at >= $1 AND created_at < $2 \
                   AND ($3::text IS NULL OR api_key = $3) \
                   AND price_amount ~ '^-?[0-9]{{1,6}}(\\.[0-9]{{1,8}})?$' \
                   AND price_currency IS NOT NULL \
                 UNION ALL \
                 SELECT hour, api_key, template, country, status, currency, cost \
                 FROM usage_rollups \
                 WHERE hour >= $1 AND hour < $2 AND ($3::text IS NULL OR api_key = $3) \
                   AND currency IS NOT NULL \
             ) \
             SELECT * FROM ( \
                 SELECT {key} AS key, currency, round(sum(cost) * {units})::text AS units \
                 FROM priced GROUP BY 1, 2 \
             ) AS costs ORDER BY key IS NOT NULL, key, currency",
            key = query.group_by.column(DAY),
            units = Amount::UNITS_PER_WHOLE,
        );
        let costs: Vec<(Option<String>, String, String)> = sqlx::query_as(&sql)
            .bind(query.since)
            .bind(query.until)
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        costs
            .into_iter()
            .map(|(key, currency, units)| {
                let units = units.parse().map_err(|_| {
                    StoreError::Corrupt(format!("a sum of prices is not a number: {units}"))
                })?;
                Ok(CostSum {
                    key,
                    currency,
                    total: Amount::from_units(units),
                })
            })
            .collect()
    }

    async fn error_codes(&self, query: &UsageQuery) -> Result<Vec<ErrorCodeCount>, StoreError> {
        let sql = format!(
            "WITH counted AS ({COUNTED}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, error_code AS code, sum(messages)::bigint AS count \
                 FROM counted WHERE error_code IS NOT NULL \
                 GROUP BY 1, 2 \
             ) AS codes ORDER BY key IS NOT NULL, key, count DESC, code",
            key = query.group_by.column(DAY)
        );
        let range = params::usage_range(query);
        all(
            crate::rows::query(&sql, &range),
            &self.pool,
            rows::error_code_count,
        )
        .await
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
