//! The message history read back: lists, usage reports and the counts behind the metrics, each
//! one aggregating query.

use async_trait::async_trait;
use chrono::DateTime;
use domain::{Amount, Attempt, Channel, Message, MessageId, MessageStatus};
use ports::{
    CostSum, ErrorCodeCount, MessageFilter, MessageReports, QueueStats, StatusCount, StoreError,
    StoreHealth, UsageGroup, UsageGrouping, UsageQuery,
};
use uuid::fmt::Hyphenated;

use crate::rows::{json_ids, micros, store_error, AttemptRow, MessageRow};
use crate::SqliteStore;

/// The SQL expression a report groups by: chosen from a closed list, never built from input.
fn group_key(grouping: UsageGrouping) -> &'static str {
    match grouping {
        UsageGrouping::Day => "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')",
        UsageGrouping::Template => "template",
        UsageGrouping::Country => "country",
        UsageGrouping::Status => "status",
        UsageGrouping::ApiKey => "api_key",
    }
}

/// `price_amount` is what `Amount` reads: an optional `-`, one to six digits, optionally a point
/// and one to eight digits (PostgreSQL says it with a regular expression). Any other stored
/// text counts nothing in a report rather than failing it or counting a wrong figure.
const PLAIN_PRICE: &str = "price_amount NOT GLOB '--*' \
     AND ltrim(price_amount, '-') GLOB '[0-9]*' \
     AND ltrim(price_amount, '-') NOT GLOB '*[^0-9.]*' \
     AND ltrim(price_amount, '-') NOT GLOB '*.*.*' \
     AND ltrim(price_amount, '-') NOT GLOB '*.' \
     AND instr(ltrim(price_amount, '-') || '.', '.') <= 7 \
     AND length(ltrim(price_amount, '-')) - instr(ltrim(price_amount, '-') || '.', '.') <= 8";

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[derive(sqlx::FromRow)]
struct MessageAttemptRow {
    message_id: Hyphenated,
    #[sqlx(flatten)]
    attempt: AttemptRow,
}

#[derive(sqlx::FromRow)]
struct UsageRow {
    key: Option<String>,
    messages: i64,
    segments: i64,
    delivered: i64,
    failed: i64,
}

#[async_trait]
impl MessageReports for SqliteStore {
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            r#"SELECT * FROM messages
               WHERE api_key = $1
                 AND ($2 IS NULL OR status = $2)
                 AND ($3 IS NULL OR "to" = $3)
                 AND ($4 IS NULL OR created_at >= $4)
                 AND ($5 IS NULL OR created_at < $5)
                 AND ($6 IS NULL OR (created_at, id) < ($6, $7))
               ORDER BY created_at DESC, id DESC
               LIMIT $8"#,
        )
        .bind(filter.api_key.as_str())
        .bind(filter.status.map(MessageStatus::as_str))
        .bind(filter.to.as_ref().map(|to| to.as_str()))
        .bind(filter.since.map(micros))
        .bind(filter.until.map(micros))
        .bind(filter.before.map(|cursor| micros(cursor.created_at)))
        .bind(filter.before.map(|cursor| cursor.id.as_uuid().hyphenated()))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Message::try_from).collect()
    }

    async fn attempts_of(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<(MessageId, Attempt)>, StoreError> {
        let rows: Vec<MessageAttemptRow> = sqlx::query_as(
            "SELECT * FROM message_attempts \
             WHERE message_id IN (SELECT value FROM json_each($1)) \
             ORDER BY message_id, number, started_at, id",
        )
        .bind(json_ids(ids))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    MessageId::from_uuid(row.message_id.into_uuid()),
                    row.attempt.try_into()?,
                ))
            })
            .collect()
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, StoreError> {
        let sql = format!(
            "SELECT * FROM ( \
                 SELECT {key} AS key, count(*) AS messages, \
                        coalesce(sum(segments), 0) AS segments, \
                        count(*) FILTER (WHERE status = 'delivered') AS delivered, \
                        count(*) FILTER (WHERE status IN ('failed', 'undelivered')) AS failed \
                 FROM messages WHERE created_at >= $1 AND created_at < $2 \
                   AND ($3 IS NULL OR api_key = $3) \
                 GROUP BY 1 \
             ) ORDER BY key IS NOT NULL, key",
            key = group_key(query.group_by)
        );
        let rows: Vec<UsageRow> = sqlx::query_as(&sql)
            .bind(micros(query.since))
            .bind(micros(query.until))
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|row| UsageGroup {
                key: row.key,
                messages: count(row.messages),
                segments: count(row.segments),
                delivered: count(row.delivered),
                failed: count(row.failed),
            })
            .collect())
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Vec<CostSum>, StoreError> {
        // SQLite has no decimal type. Each price becomes whole units of 10^-8 (exact through a
        // REAL for six digits and eight decimals), summed in two integers, whole currency
        // units and the rest, which no number of rows overflows.
        let sql = format!(
            "SELECT key, currency, sum(units / {per_whole}), sum(units % {per_whole}) FROM ( \
                 SELECT {key} AS key, price_currency AS currency, \
                        CAST(round(CAST(price_amount AS REAL) * {per_whole}) AS INTEGER) AS units \
                 FROM messages \
                 WHERE created_at >= $1 AND created_at < $2 \
                   AND ($3 IS NULL OR api_key = $3) \
                   AND price_currency IS NOT NULL AND {PLAIN_PRICE} \
             ) GROUP BY 1, 2 ORDER BY key IS NOT NULL, key, currency",
            key = group_key(query.group_by),
            per_whole = Amount::UNITS_PER_WHOLE,
        );
        let rows: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(&sql)
            .bind(micros(query.since))
            .bind(micros(query.until))
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(key, currency, whole, rest)| CostSum {
                key,
                currency,
                total: Amount::from_units(
                    i128::from(whole) * Amount::UNITS_PER_WHOLE + i128::from(rest),
                ),
            })
            .collect())
    }

    async fn error_codes(&self, query: &UsageQuery) -> Result<Vec<ErrorCodeCount>, StoreError> {
        let sql = format!(
            "SELECT * FROM ( \
                 SELECT {key} AS key, error_code AS code, count(*) AS count \
                 FROM messages \
                 WHERE created_at >= $1 AND created_at < $2 AND error_code IS NOT NULL \
                   AND ($3 IS NULL OR api_key = $3) \
                 GROUP BY 1, 2 \
             ) ORDER BY key IS NOT NULL, key, count DESC, code",
            key = group_key(query.group_by)
        );
        let rows: Vec<(Option<String>, String, i64)> = sqlx::query_as(&sql)
            .bind(micros(query.since))
            .bind(micros(query.until))
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(key, code, n)| ErrorCodeCount {
                key,
                code,
                count: count(n),
            })
            .collect())
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT status, channel, count(*) FROM messages GROUP BY status, channel \
             ORDER BY status, channel",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|(status, channel, n)| {
                Ok(StatusCount {
                    status: status.parse().map_err(|error| {
                        StoreError::Corrupt(format!("messages.status: {error}"))
                    })?,
                    channel: channel.parse::<Channel>().map_err(|error| {
                        StoreError::Corrupt(format!("messages.channel: {error}"))
                    })?,
                    count: count(n),
                })
            })
            .collect()
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let (depth, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT \
                 (SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')), \
                 (SELECT min(created_at) FROM messages WHERE status = 'queued')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(QueueStats {
            depth: count(depth),
            oldest_queued_at: oldest
                .map(|at| {
                    DateTime::from_timestamp_micros(at)
                        .ok_or_else(|| StoreError::Corrupt(format!("{at} is not a time")))
                })
                .transpose()?,
        })
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
