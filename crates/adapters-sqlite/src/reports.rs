//! The message history read back: lists, usage reports and the counts behind the metrics, each
//! one aggregating query.

use async_trait::async_trait;
use domain::{Amount, Attempt, Message, MessageId, MessageStatus};
use ports::params::{self, literals};
use ports::{
    conversion_groups, latency_bucket_sql, rows, ConversionGroup, ConversionQuery, CostSum,
    ErrorCodeCount, MessageFilter, MessageReports, QueueStats, StatusCount, StoreError,
    StoreHealth, UsageGroup, UsageQuery,
};

use crate::rows::{all, json_ids, micros, one, store_error};
use crate::SqliteStore;

/// The UTC day of `created_at`, `YYYY-MM-DD`, as reports group by it.
const DAY: &str = "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')";

/// The messages of a report's range (`$1`, `$2`, optionally only API key `$3`) as counted rows:
/// each stored message counts one, and each rollup of the messages retention or an erasure
/// removed counts what it folded (a rollup belongs to the range when its hour starts in it).
const COUNTED: &str = "\
    SELECT created_at, api_key, template, country, status, error_code, 1 AS messages, segments \
    FROM messages WHERE created_at >= $1 AND created_at < $2 AND ($3 IS NULL OR api_key = $3) \
    UNION ALL \
    SELECT hour, api_key, template, country, status, error_code, messages, segments \
    FROM usage_rollups WHERE hour >= $1 AND hour < $2 AND ($3 IS NULL OR api_key = $3)";

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

/// The verifications a conversion report's range holds (`$1`, `$2`, optionally only API key
/// `$3`), each with what it is grouped by and how many of its codes a provider accepted.
const STARTED: &str = r#"
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
    WHERE v.created_at >= $1 AND v.created_at < $2 AND ($3 IS NULL OR v.api_key = $3)"#;

/// Milliseconds from `from` to `to`, two timestamps.
fn millis(from: &str, to: &str) -> String {
    format!("max(0, ({to} - {from}) / 1000)")
}

impl SqliteStore {
    async fn conversion_of(
        &self,
        query: &ConversionQuery,
    ) -> Result<Vec<ConversionGroup>, StoreError> {
        let started = STARTED.replace(
            "{accepted}",
            &literals(MessageStatus::ACCEPTED.map(MessageStatus::as_str)),
        );
        let key = query.group_by.column(DAY);
        let range = query.range();
        let counts = format!(
            "WITH started AS ({started}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, count(*) AS started, \
                        coalesce(sum(codes), 0) AS codes_sent, \
                        count(*) FILTER (WHERE status = 'approved') AS approved \
                 FROM started GROUP BY 1 \
             ) ORDER BY key IS NOT NULL, key"
        );
        let counts = all(
            crate::rows::query(&counts, &range),
            &self.pool,
            rows::conversion_count,
        )
        .await?;
        let latencies = format!(
            "WITH started AS ({started}), \
             delivered AS ( \
                 SELECT s.*, \
                        (SELECT min(a.finished_at) FROM message_attempts a \
                         WHERE a.message_id = m.id AND a.outcome IN ('sent', 'adopted')) \
                            AS sent_at, \
                        (SELECT min(e.received_at) FROM message_events e \
                         WHERE e.message_id = m.id AND e.status = 'delivered') AS receipt_at \
                 FROM started s JOIN messages m ON m.verification_id = s.id \
                 WHERE m.status = 'delivered' \
             ) \
             SELECT key, latency, {bucket} AS bucket, count(*) AS count FROM ( \
                 SELECT {key} AS key, 'approval' AS latency, {approval} AS millis \
                 FROM started WHERE status = 'approved' \
                 UNION ALL \
                 SELECT {key}, 'delivery', {delivery} \
                 FROM delivered WHERE sent_at IS NOT NULL AND receipt_at IS NOT NULL \
             ) AS timed GROUP BY 1, 2, 3",
            bucket = latency_bucket_sql("millis"),
            approval = millis("created_at", "updated_at"),
            delivery = millis("sent_at", "receipt_at"),
        );
        let latencies = all(
            crate::rows::query(&latencies, &range),
            &self.pool,
            rows::latency_count,
        )
        .await?;
        // Summed in whole currency units and the rest, as the usage report sums the same
        // prices.
        let costs = format!(
            "WITH started AS ({started}) \
             SELECT key, currency, sum(whole), sum(rest) FROM ( \
                 SELECT {key} AS key, currency, units / {per_whole} AS whole, \
                        units % {per_whole} AS rest \
                 FROM ( \
                     SELECT s.*, m.price_currency AS currency, \
                            CAST(round(CAST(m.price_amount AS REAL) * {per_whole}) AS INTEGER) \
                                AS units \
                     FROM started s JOIN messages m ON m.verification_id = s.id \
                     WHERE m.price_currency IS NOT NULL AND {PLAIN_PRICE} \
                 ) \
             ) GROUP BY 1, 2",
            per_whole = Amount::UNITS_PER_WHOLE,
        );
        let sums: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(&costs)
            .bind(micros(query.since))
            .bind(micros(query.until))
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let costs: Vec<CostSum> = sums
            .into_iter()
            .map(|(key, currency, whole, rest)| CostSum {
                key,
                currency,
                total: Amount::from_units(
                    i128::from(whole) * Amount::UNITS_PER_WHOLE + i128::from(rest),
                ),
            })
            .collect();
        Ok(conversion_groups(counts, &latencies, &costs))
    }
}

#[async_trait]
impl MessageReports for SqliteStore {
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        let page = crate::rows::query(
            r#"SELECT * FROM messages
               WHERE ($1 IS NULL OR api_key = $1)
                 AND ($2 IS NULL OR status = $2)
                 AND ($3 IS NULL OR "to" = $3)
                 AND ($4 IS NULL OR created_at >= $4)
                 AND ($5 IS NULL OR created_at < $5)
                 AND ($6 IS NULL OR (created_at, id) < ($6, $7))
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
        let attempts = sqlx::query(
            "SELECT * FROM message_attempts \
             WHERE message_id IN (SELECT value FROM json_each($1)) \
             ORDER BY message_id, number, started_at, id",
        )
        .bind(json_ids(ids));
        all(attempts, &self.pool, rows::message_attempt).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, StoreError> {
        let sql = format!(
            "WITH counted AS ({COUNTED}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, sum(messages) AS messages, \
                        coalesce(sum(segments), 0) AS segments, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({delivered})), 0) \
                            AS delivered, \
                        coalesce(sum(messages) FILTER (WHERE status IN ({failed})), 0) AS failed \
                 FROM counted GROUP BY 1 \
             ) ORDER BY key IS NOT NULL, key",
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
        // SQLite has no decimal type. Each price becomes whole units of 10^-8 (exact through a
        // REAL for six digits and eight decimals), summed in two integers, whole currency
        // units and the rest, which no number of rows overflows; the rollups hold the removed
        // messages' sums in the same two parts.
        let sql = format!(
            "SELECT key, currency, sum(whole), sum(rest) FROM ( \
                 SELECT {key} AS key, currency, units / {per_whole} AS whole, \
                        units % {per_whole} AS rest \
                 FROM ( \
                     SELECT created_at, api_key, template, country, status, \
                            price_currency AS currency, \
                            CAST(round(CAST(price_amount AS REAL) * {per_whole}) AS INTEGER) \
                                AS units \
                     FROM messages \
                     WHERE created_at >= $1 AND created_at < $2 \
                       AND ($3 IS NULL OR api_key = $3) \
                       AND price_currency IS NOT NULL AND {PLAIN_PRICE} \
                 ) \
                 UNION ALL \
                 SELECT {key} AS key, currency, cost_whole, cost_rest \
                 FROM (SELECT hour AS created_at, * FROM usage_rollups) \
                 WHERE created_at >= $1 AND created_at < $2 \
                   AND ($3 IS NULL OR api_key = $3) AND currency IS NOT NULL \
             ) GROUP BY 1, 2 ORDER BY key IS NOT NULL, key, currency",
            key = query.group_by.column(DAY),
            per_whole = Amount::UNITS_PER_WHOLE,
        );
        let sums: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(&sql)
            .bind(micros(query.since))
            .bind(micros(query.until))
            .bind(query.api_key.as_deref())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(sums
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
            "WITH counted AS ({COUNTED}) \
             SELECT * FROM ( \
                 SELECT {key} AS key, error_code AS code, sum(messages) AS count \
                 FROM counted WHERE error_code IS NOT NULL \
                 GROUP BY 1, 2 \
             ) ORDER BY key IS NOT NULL, key, count DESC, code",
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

    async fn conversion(
        &self,
        query: &ConversionQuery,
    ) -> Result<Vec<ConversionGroup>, StoreError> {
        self.conversion_of(query).await
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
