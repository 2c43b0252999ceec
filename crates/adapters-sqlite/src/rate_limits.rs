//! Send limits on SQLite. Every write transaction takes the
//! database's write lock first (`BEGIN IMMEDIATE`), so a count and the send it admits are never
//! split by a concurrent caller.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use ports::{Admission, RateLimit, RateLimiter, StoreError};
use sqlx::SqliteConnection;
use tracing::instrument;

use crate::rows::{instant, micros, store_error};
use crate::SqliteStore;

/// Whether `limit` has room at `now`, after forgetting the sends that have left its window.
/// `Some(retry_after)` when it is full. Reads the key's count rather than its events, so that
/// a limit of thousands costs no more than a limit of three.
async fn room_in(
    connection: &mut SqliteConnection,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<Option<TimeDelta>, StoreError> {
    let window_start = micros(now - limit.window);
    let expired = sqlx::query("DELETE FROM rate_limit_events WHERE key = $1 AND at <= $2")
        .bind(&limit.key)
        .bind(window_start)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?
        .rows_affected();
    // A key without a count yet counts its events once.
    let kept: i64 = sqlx::query_scalar(
        "INSERT INTO rate_limit_counts (key, events) \
         VALUES ($1, (SELECT count(*) FROM rate_limit_events WHERE key = $1)) \
         ON CONFLICT (key) DO UPDATE SET events = events - $2 \
         RETURNING events",
    )
    .bind(&limit.key)
    .bind(i64::try_from(expired).unwrap_or(i64::MAX))
    .fetch_one(&mut *connection)
    .await
    .map_err(store_error)?;
    let max = i64::from(limit.max);
    if kept < max {
        return Ok(None);
    }
    if max == 0 {
        return Ok(Some(limit.window));
    }
    // The window has room again once the `max`-th most recent send has left it: with the
    // usual `kept == max`, the oldest.
    let blocking: Option<i64> = sqlx::query_scalar(
        "SELECT at FROM rate_limit_events WHERE key = $1 ORDER BY at LIMIT 1 OFFSET $2",
    )
    .bind(&limit.key)
    .bind(kept - max)
    .fetch_optional(&mut *connection)
    .await
    .map_err(store_error)?;
    blocking
        .map(|at| Ok(instant("at", at)? + limit.window - now))
        .transpose()
}

#[async_trait]
impl RateLimiter for SqliteStore {
    #[instrument(level = "debug", skip_all, fields(limits = limits.len()))]
    async fn acquire(
        &self,
        limits: &[RateLimit],
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let mut transaction = self.begin_write().await?;
        for limit in limits {
            if let Some(retry_after) = room_in(&mut transaction, limit, now).await? {
                transaction.rollback().await.map_err(store_error)?;
                return Ok(Admission::Refused {
                    key: limit.key.clone(),
                    retry_after,
                });
            }
        }
        for limit in limits {
            sqlx::query("INSERT INTO rate_limit_events (key, at) VALUES ($1, $2)")
                .bind(&limit.key)
                .bind(micros(now))
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            // `room_in` made the key's count row.
            sqlx::query("UPDATE rate_limit_counts SET events = events + 1 WHERE key = $1")
                .bind(&limit.key)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(Admission::Admitted)
    }
}
