//! Send limits and per-country send volume on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::pumping::{baseline_period, hour_of};
use domain::HourlySends;
use ports::{rows, Admission, RateLimit, RateLimiter, StoreError};
use tracing::instrument;

use crate::connections::Connections;
use crate::rows::{all, store_error};
use crate::PgStore;
use store_batch::BatchWrite;

/// Lets the transaction's commit return before its WAL reaches the disk. Both writers here
/// serialise on a lock (a key's, a country's row) that they hold until commit returns, so a
/// flush inside it made every code of one API key wait for the previous code's flush
/// (docs/performance.md). A server crash can lose only
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
    type Pool = Connections;
    type Item = CountrySend;
    type Output = ();

    async fn write(
        &self,
        connections: &Connections,
        sends: &[CountrySend],
    ) -> Result<Vec<()>, StoreError> {
        // Hours older than the baseline of the batch's earliest send are forgotten.
        let Some(earliest) = sends.iter().map(|send| send.hour).min() else {
            return Ok(Vec::new());
        };
        let mut connection = connections.acquire().await?;
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
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        Ok(vec![(); sends.len()])
    }
}

/// One send to admit against its limits.
pub(crate) struct Acquire {
    limits: Vec<RateLimit>,
    now: DateTime<Utc>,
}

/// `RateLimiter::acquire`, in batches (see `store_batch`): `sms_notify_acquire()` (migration
/// 0009, 0010) judges the sends of a burst in order, in one statement.
pub(crate) struct Acquires;

impl BatchWrite for Acquires {
    type Pool = Connections;
    type Item = Acquire;
    type Output = Admission;

    async fn write(
        &self,
        connections: &Connections,
        acquires: &[Acquire],
    ) -> Result<Vec<Admission>, StoreError> {
        let (mut sends, mut keys, mut maxes, mut window_starts, mut sent_ats) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (send, acquire) in (1..).zip(acquires) {
            for limit in &acquire.limits {
                sends.push(send);
                keys.push(limit.key.as_str());
                maxes.push(i64::from(limit.max));
                window_starts.push(acquire.now - limit.window);
                sent_ats.push(acquire.now);
            }
        }
        let mut connection = connections.acquire().await?;
        let refused: Vec<(i32, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT refused_send, refused_key, room_at \
             FROM sms_notify_acquire($1, $2, $3, $4, $5)",
        )
        .bind(sends)
        .bind(keys)
        .bind(maxes)
        .bind(window_starts)
        .bind(sent_ats)
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        let mut admissions = vec![Admission::Admitted; acquires.len()];
        for (send, key, room_at) in refused {
            let acquire = usize::try_from(send - 1)
                .ok()
                .and_then(|index| acquires.get(index).zip(admissions.get_mut(index)));
            let Some((acquire, admission)) = acquire else {
                return Err(StoreError::Corrupt(format!(
                    "refused an unknown send {send}"
                )));
            };
            let window = acquire
                .limits
                .iter()
                .find(|limit| limit.key == key)
                .map(|limit| limit.window)
                .ok_or_else(|| StoreError::Corrupt(format!("refused by an unknown key {key}")))?;
            *admission = Admission::Refused {
                key,
                // A limit of zero never has room; otherwise, once the blocking send leaves it.
                retry_after: room_at.map_or(window, |at| at + window - acquire.now),
            };
        }
        Ok(admissions)
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
        self.batched
            .acquires
            .write(Acquire {
                limits: limits.to_vec(),
                now,
            })
            .await
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
        let volume = sqlx::query(
            "SELECT hour, sends FROM country_send_volume \
             WHERE calling_code = $1 AND hour >= $2 ORDER BY hour",
        )
        .bind(i32::from(calling_code))
        .bind(since);
        all(volume, &self.pool, rows::hourly_sends).await
    }
}
