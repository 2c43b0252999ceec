//! The abuse and cost guards in front of every one-time code: the destination country
//! allow-list, and send limits per number and per API key over sliding windows (counted in the
//! database, so they hold across instances). The SMS pumping alarm that was here is the fraud
//! guard's `country_surge` policy (`usecases::fraud`).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{CountryAllowList, CountryNotAllowed, PhoneNumber};
use ports::{Admission, RateLimit, RateLimiter, StoreError};

/// At most `max` codes in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimit {
    pub max: u32,
    pub window: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Codes to one number, whichever API key asks: a number cannot be bombarded.
    pub per_number: SendLimit,
    /// Codes on behalf of one API key: a ceiling on what one client can cost.
    pub per_api_key: SendLimit,
    pub allowed_countries: CountryAllowList,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            per_number: SendLimit {
                max: 10,
                window: TimeDelta::hours(1),
            },
            per_api_key: SendLimit {
                max: 1_000,
                window: TimeDelta::hours(1),
            },
            allowed_countries: CountryAllowList::everywhere(),
        }
    }
}

/// Which limit refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Number,
    ApiKey,
}

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    CountryNotAllowed(#[from] CountryNotAllowed),
    #[error("too many codes sent {}; try again in {} seconds",
        match scope { LimitScope::Number => "to this number", LimitScope::ApiKey => "for this API key" },
        whole_seconds(*retry_after))]
    RateLimited {
        scope: LimitScope,
        retry_after: TimeDelta,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// How long the client should wait, when waiting helps.
    pub fn retry_after(&self) -> Option<TimeDelta> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            Refusal::CountryNotAllowed(_) | Refusal::Store(_) => None,
        }
    }
}

/// Whole seconds, rounded up: waiting a second too long beats being refused again.
pub fn whole_seconds(delta: TimeDelta) -> u64 {
    let millis = delta.num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1_000).unwrap_or(0)
}

pub struct SendGuards {
    pub limiter: Arc<dyn RateLimiter>,
    pub config: GuardConfig,
}

impl SendGuards {
    pub fn new(limiter: Arc<dyn RateLimiter>, config: GuardConfig) -> Self {
        Self { limiter, config }
    }

    /// Whether codes may go to this number's country at all; checked before anything else, so
    /// that nothing is stored or sent for a refused country.
    pub fn check_destination(&self, to: &PhoneNumber) -> Result<(), Refusal> {
        Ok(self.config.allowed_countries.admits(to)?)
    }

    /// Admits one code to `to` for `api_key` at `now`, counting it against both send limits,
    /// or says why not. Called only once a code is otherwise ready to go, so that a request
    /// refused for another reason uses up nothing.
    pub async fn admit(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let number_key = format!("number:{to}");
        let limits = [
            RateLimit {
                key: number_key.clone(),
                max: self.config.per_number.max,
                window: self.config.per_number.window,
            },
            RateLimit {
                key: format!("api-key:{api_key}"),
                max: self.config.per_api_key.max,
                window: self.config.per_api_key.window,
            },
        ];
        match self.limiter.acquire(&limits, now).await? {
            Admission::Admitted => Ok(()),
            Admission::Refused { key, retry_after } => {
                let scope = if key == number_key {
                    LimitScope::Number
                } else {
                    LimitScope::ApiKey
                };
                tracing::warn!(to = %to.masked(), ?scope, "send limit reached");
                Err(Refusal::RateLimited { scope, retry_after })
            }
        }
    }
}
