//! Send limits, held in the database so that every instance sees the same
//! counts.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

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

/// Sliding-window send limits.
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
}
