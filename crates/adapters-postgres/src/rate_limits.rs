//! Send limits and per-country send volume on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::pumping::{baseline_period, hour_of};
use domain::HourlySends;
use ports::{Admission, RateLimit, RateLimiter, StoreError};
use sqlx::PgPool;
use tracing::instrument;

use crate::rows::store_error;
use crate::PgStore;
use store_batch::BatchWrite;

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

/// A send counted for the pumping alarm: to a country's calling code, in an hour.
pub(crate) struct CountrySend {
    calling_code: u16,
    hour: DateTime<Utc>,
}

/// `RateLimiter::record_country_send`, in batches (see `store_batch`): every code of a
/// country in one hour adds to one row, so one by one they waited for each other's commits.
pub(crate) struct CountrySends;

impl BatchWrite for CountrySends {
    type Pool = PgPool;
    type Item = CountrySend;
    type Output = ();

    async fn write(&self, pool: &PgPool, sends: &[CountrySend]) -> Result<Vec<()>, StoreError> {
        // Hours older than the baseline of the batch's earliest send are forgotten.
        let Some(earliest) = sends.iter().map(|send| send.hour).min() else {
            return Ok(Vec::new());
        };
        // `FROM skip` sets the option first.
        sqlx::query(concat!(
            "WITH skip AS (SELECT ",
            skip_the_flush!(),
            "), \
             sends AS ( \
                 SELECT calling_code, hour, count(*) AS sends \
                 FROM unnest($1::int4[], $2::timestamptz[]) AS s (calling_code, hour) \
                 GROUP BY calling_code, hour \
             ), \
             forgotten AS ( \
                 DELETE FROM country_send_volume \
                 WHERE calling_code IN (SELECT calling_code FROM sends) AND hour < $3 \
             ) \
             INSERT INTO country_send_volume (calling_code, hour, sends) \
             SELECT calling_code, hour, sends FROM sends, skip \
             ON CONFLICT (calling_code, hour) \
             DO UPDATE SET sends = country_send_volume.sends + EXCLUDED.sends"
        ))
        .bind(
            sends
                .iter()
                .map(|send| i32::from(send.calling_code))
                .collect::<Vec<_>>(),
        )
        .bind(sends.iter().map(|send| send.hour).collect::<Vec<_>>())
        .bind(earliest - baseline_period())
        .execute(pool)
        .await
        .map_err(store_error)?;
        Ok(vec![(); sends.len()])
    }
}

#[async_trait]
impl RateLimiter for PgStore {
    #[instrument(skip_all, fields(limits = limits.len()))]
    async fn acquire(
        &self,
        limits: &[RateLimit],
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        // Keys are taken in one order, so that two callers never wait on each other;
        // descending takes `api-key:`, which every code of a client shares, after `number:`,
        // so it is held the shortest.
        let mut ordered: Vec<&RateLimit> = limits.iter().collect();
        ordered.sort_by(|a, b| b.key.cmp(&a.key));
        let refused: Option<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT refused_key, room_at FROM sms_notify_acquire($1, $2, $3, $4)")
                .bind(
                    ordered
                        .iter()
                        .map(|limit| limit.key.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    ordered
                        .iter()
                        .map(|limit| i64::from(limit.max))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    ordered
                        .iter()
                        .map(|limit| now - limit.window)
                        .collect::<Vec<_>>(),
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        let Some((key, room_at)) = refused else {
            return Ok(Admission::Admitted);
        };
        let window = ordered
            .iter()
            .find(|limit| limit.key == key)
            .map(|limit| limit.window)
            .ok_or_else(|| StoreError::Corrupt(format!("refused by an unknown key {key}")))?;
        Ok(Admission::Refused {
            key,
            // A limit of zero never has room; otherwise, once the blocking send leaves it.
            retry_after: room_at.map_or(window, |at| at + window - now),
        })
    }

    async fn record_country_send(
        &self,
        calling_code: u16,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.batched
            .country_sends
            .write(CountrySend {
                calling_code,
                hour: hour_of(now),
            })
            .await
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
