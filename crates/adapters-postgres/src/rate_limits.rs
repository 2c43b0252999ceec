//! Send limits on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ports::{Admission, RateLimit, RateLimiter, StoreError};
use tracing::instrument;

use crate::connections::Connections;
use crate::rows::store_error;
use crate::PgStore;
use store_batch::BatchWrite;

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
    #[instrument(level = "debug", skip_all, fields(limits = limits.len()))]
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
}
