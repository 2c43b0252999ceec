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

/// Lets the transaction's commit return before its WAL reaches the disk. Both writers here
/// serialise on a lock (a key's, a country's row) that they hold until commit returns, so a
/// flush inside it made every code of one API key wait for the previous code's flush (4.9 ms
/// on the benchmark machine under load: at most ~200 codes/s). A server crash can lose only
/// the last fraction of a second of such commits, and no send they admitted: the code's own
/// verification commits afterwards with a flush, which writes the earlier WAL too. What can
/// be lost is a pumping-alarm count, which the alarm tolerates.
macro_rules! skip_the_flush {
    () => {
        "set_config('synchronous_commit', 'off', true)"
    };
}

/// Whether `limit` has room at `now`, after forgetting the sends that have left its window.
/// `Some(retry_after)` when it is full. Reads the key's count rather than its events, so that
/// a limit of thousands costs no more than a limit of three, and locks the count's row until
/// commit: a caller waiting for it then reads the count its holder left.
async fn room_in(
    connection: &mut PgConnection,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<Option<chrono::TimeDelta>, StoreError> {
    let window_start = now - limit.window;
    // A key without a count yet counts its events once (the DELETE's rows are not visible to
    // this statement's sub-select, so it counts what remains).
    let kept: i64 = sqlx::query_scalar(concat!(
        "WITH skip AS (SELECT ",
        skip_the_flush!(),
        "), \
         expired AS ( \
             DELETE FROM rate_limit_events WHERE key = $1 AND at <= $2 RETURNING 1 \
         ) \
         INSERT INTO rate_limit_counts (key, events) \
         SELECT $1, (SELECT count(*) FROM rate_limit_events WHERE key = $1 AND at > $2) \
         FROM skip \
         ON CONFLICT (key) DO UPDATE \
         SET events = rate_limit_counts.events - (SELECT count(*) FROM expired) \
         RETURNING events",
    ))
    .bind(&limit.key)
    .bind(window_start)
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
    let blocking: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT at FROM rate_limit_events WHERE key = $1 ORDER BY at LIMIT 1 OFFSET $2",
    )
    .bind(&limit.key)
    .bind(kept - max)
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
        // Each key's count row is its lock, taken by `room_in` and held to commit, so a count
        // and the send it admits cannot be split by another instance's. Keys are taken in one
        // order, so that two callers never wait on each other; descending takes `api-key:`,
        // which every code of a client shares, after `number:`, so it is held the shortest.
        let mut ordered: Vec<&RateLimit> = limits.iter().collect();
        ordered.sort_by(|a, b| b.key.cmp(&a.key));
        for limit in ordered {
            if let Some(retry_after) = room_in(&mut transaction, limit, now).await? {
                transaction.rollback().await.map_err(store_error)?;
                return Ok(Admission::Refused {
                    key: limit.key.clone(),
                    retry_after,
                });
            }
        }
        // `room_in` made (and holds) each key's count row; a key named twice counts twice.
        let counted: Vec<&str> = limits.iter().map(|limit| limit.key.as_str()).collect();
        sqlx::query(
            "WITH sends AS (SELECT key FROM unnest($1::text[]) AS key), \
             counted AS ( \
                 UPDATE rate_limit_counts AS c SET events = c.events + n.sends \
                 FROM (SELECT key, count(*) AS sends FROM sends GROUP BY key) AS n \
                 WHERE c.key = n.key \
             ) \
             INSERT INTO rate_limit_events (key, at) SELECT key, $2 FROM sends",
        )
        .bind(&counted)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
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
        // One statement holding the hour's row until commit; `FROM skip` sets the option first.
        sqlx::query(concat!(
            "WITH skip AS (SELECT ",
            skip_the_flush!(),
            "), \
             forgotten AS ( \
                 DELETE FROM country_send_volume WHERE calling_code = $1 AND hour < $3 \
             ) \
             INSERT INTO country_send_volume (calling_code, hour, sends) \
             SELECT $1, $2, 1 FROM skip \
             ON CONFLICT (calling_code, hour) \
             DO UPDATE SET sends = country_send_volume.sends + 1"
        ))
        .bind(i32::from(calling_code))
        .bind(hour)
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
