//! Send limits and send volumes, held in the database so that every instance sees the same
//! counts.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::HourlySends;

use crate::StoreError;

/// At most `max` sends in any `window` for `key` (such as `number:+15551234567` or
/// `api-key:auth`): a sliding window, not a calendar one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub key: String,
    pub max: u32,
    pub window: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every limit had room; the send is counted in each.
    Admitted,
    /// `key`'s limit is full until `retry_after` has passed; nothing was counted.
    Refused { key: String, retry_after: TimeDelta },
}

/// Sliding-window send limits, and the hourly send volume per country calling code that the
/// pumping alarm compares against its usual rate.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one send at `now` in every limit, atomically, if every limit has room for it;
    /// otherwise counts nothing and says which limit is full and until when. Concurrent callers,
    /// on any instance, never admit more than a limit's `max`.
    async fn acquire(
        &self,
        limits: &[RateLimit],
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError>;

    /// Counts one send to `calling_code` in the hour `now` is in.
    async fn record_country_send(
        &self,
        calling_code: u16,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The sends to `calling_code` per hour, for the hours starting at or after `since`, oldest
    /// first; hours without sends are left out.
    async fn country_sends(
        &self,
        calling_code: u16,
        since: DateTime<Utc>,
    ) -> Result<Vec<HourlySends>, StoreError>;
}
