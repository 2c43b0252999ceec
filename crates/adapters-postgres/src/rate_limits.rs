//! Send limits and per-country send volume on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::pumping::{baseline_period, hour_of};
use domain::HourlySends;
use ports::{Admission, RateLimit, RateLimiter, StoreError};
use sqlx::PgConnection;
use tracing::instrument;

use crate::rows::store_error;
use crate::PgStore;

/// Whether `limit` has room at `now`, after forgetting the sends that have left its window.
/// `Some(retry_after)` when it is full.
async fn room_in(
    connection: &mut PgConnection,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<Option<chrono::TimeDelta>, StoreError> {
    let window_start = now - limit.window;
    sqlx::query("DELETE FROM rate_limit_events WHERE key = $1 AND at <= $2")
        .bind(&limit.key)
        .bind(window_start)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    let Some(offset) = limit.max.checked_sub(1) else {
        return Ok(Some(limit.window));
    };
    // The window is full when it holds `max` sends; it has room again once the `max`-th most
    // recent of them has left it.
    let blocking: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT at FROM rate_limit_events WHERE key = $1 AND at > $2 \
         ORDER BY at DESC LIMIT 1 OFFSET $3",
    )
    .bind(&limit.key)
    .bind(window_start)
    .bind(i64::from(offset))
    .fetch_optional(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(blocking.map(|at| at + limit.window - now))
}

#[async_trait]
impl RateLimiter for PgStore {
    #[instrument(skip_all, fields(limits = limits.len()))]
    async fn acquire(
        &self,
        limits: &[RateLimit],
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // One lock per key, taken in one order so that two callers never wait on each other;
        // held to commit, so a count and the send it admits cannot be split by another
        // instance's.
        let mut keys: Vec<&str> = limits.iter().map(|limit| limit.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
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
                .bind(now)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(Admission::Admitted)
    }

    async fn record_country_send(
        &self,
        calling_code: u16,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let hour = hour_of(now);
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        sqlx::query(
            "INSERT INTO country_send_volume (calling_code, hour, sends) VALUES ($1, $2, 1) \
             ON CONFLICT (calling_code, hour) \
             DO UPDATE SET sends = country_send_volume.sends + 1",
        )
        .bind(i32::from(calling_code))
        .bind(hour)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query("DELETE FROM country_send_volume WHERE calling_code = $1 AND hour < $2")
            .bind(i32::from(calling_code))
            .bind(hour - baseline_period())
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(())
    }

    async fn country_sends(
        &self,
        calling_code: u16,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourlySends>, StoreError> {
        let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT hour, sends FROM country_send_volume \
             WHERE calling_code = $1 AND hour >= $2 ORDER BY hour",
        )
        .bind(i32::from(calling_code))
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter()
            .map(|(hour, sends)| {
                let sends = u64::try_from(sends)
                    .map_err(|_| StoreError::Corrupt(format!("sends: {sends} is not a count")))?;
                Ok(HourlySends { hour, sends })
            })
            .collect()
    }
}
