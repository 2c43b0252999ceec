//! The abuse and cost guards in front of every one-time code: the destination country
//! allow-list, send limits per number and per API key over sliding windows (counted in the
//! database, so they hold across instances), and the SMS pumping alarm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use domain::pumping::{baseline_period, hour_of};
use domain::{
    CountryAllowList, CountryNotAllowed, HourlySends, PhoneNumber, PumpingPolicy, Traffic,
};
use ports::{Admission, RateLimit, RateLimiter, StoreError};

/// How long a client is asked to wait when codes to a surging calling code are refused: the
/// surge is measured over an hour, so it cannot end much sooner.
const PAUSED_RETRY_AFTER: TimeDelta = TimeDelta::minutes(15);

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
    pub pumping: PumpingPolicy,
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
            pumping: PumpingPolicy::default(),
        }
    }
}

/// Told of every send that finds its calling code surging, so that metrics can count them
/// (the warning is logged whether or not anything listens, at most once a
/// [`SURGE_WARNING_INTERVAL`] per calling code).
pub trait PumpingAlarmHook: Send + Sync {
    fn surge(&self, calling_code: u16, traffic: &Traffic);
}

/// The hook of a service without metrics: the log line is the whole alarm.
pub struct LogOnly;

impl PumpingAlarmHook for LogOnly {
    fn surge(&self, _calling_code: u16, _traffic: &Traffic) {}
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
    #[error("codes to +{calling_code} numbers are paused: their volume is far above usual (possible SMS pumping)")]
    DestinationPaused { calling_code: u16 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// How long the client should wait, when waiting helps.
    pub fn retry_after(&self) -> Option<TimeDelta> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            Refusal::DestinationPaused { .. } => Some(PAUSED_RETRY_AFTER),
            Refusal::CountryNotAllowed(_) | Refusal::Store(_) => None,
        }
    }
}

/// Whole seconds, rounded up: waiting a second too long beats being refused again.
pub fn whole_seconds(delta: TimeDelta) -> u64 {
    let millis = delta.num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1_000).unwrap_or(0)
}

/// How long an instance reuses a calling code's hourly send counts before reading them again.
/// Every code would otherwise read up to a week of them (168 rows) for a rate that changes by
/// one per code: the alarm learns of a surge at most this much later.
const TRAFFIC_FRESHNESS: TimeDelta = TimeDelta::seconds(1);

/// A surge is logged at most this often per calling code and instance: during one, every code
/// to the calling code finds it, and a warning per code would bury the rest of the log (the
/// metric still counts each). The warning says how many codes it stands for.
pub const SURGE_WARNING_INTERVAL: TimeDelta = TimeDelta::minutes(1);

pub struct SendGuards {
    pub limiter: Arc<dyn RateLimiter>,
    pub config: GuardConfig,
    pub alarm: Arc<dyn PumpingAlarmHook>,
    traffic: Mutex<TrafficReads>,
    warnings: Mutex<SurgeWarnings>,
}

/// Per calling code: when its hourly counts were read, and what they were.
type TrafficReads = HashMap<u16, (DateTime<Utc>, Arc<[HourlySends]>)>;

/// Per calling code: when its surge was last logged, and the codes that found it surging since.
type SurgeWarnings = HashMap<u16, (DateTime<Utc>, u64)>;

impl SendGuards {
    pub fn new(
        limiter: Arc<dyn RateLimiter>,
        config: GuardConfig,
        alarm: Arc<dyn PumpingAlarmHook>,
    ) -> Self {
        Self {
            limiter,
            config,
            alarm,
            traffic: Mutex::default(),
            warnings: Mutex::default(),
        }
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
        self.watch_for_pumping(to, now).await?;
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

    /// Counts a code queued for `to`, for the pumping alarm's usual rates, in the background:
    /// the code is already on its way, so the answer does not wait for the count (waiting cost
    /// throughput: `docs/performance.md`), and a count lost to a failure or a crash skews
    /// nothing (a failure is logged).
    pub fn record(&self, to: &PhoneNumber, now: DateTime<Utc>) {
        let (limiter, calling_code) = (self.limiter.clone(), to.calling_code());
        tokio::spawn(async move {
            if let Err(error) = limiter.record_country_send(calling_code, now).await {
                tracing::warn!(%error, "cannot count a send for the pumping alarm");
            }
        });
    }

    fn recent_traffic(&self, calling_code: u16, now: DateTime<Utc>) -> Option<Arc<[HourlySends]>> {
        let traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
        let (read_at, hourly) = traffic.get(&calling_code)?;
        (now - *read_at < TRAFFIC_FRESHNESS && now >= *read_at).then(|| hourly.clone())
    }

    /// Counts a code that found its calling code surging; `Some(codes)` when the surge is to be
    /// logged now, `codes` being those it was found by since the last warning (this one included).
    fn surge_warning_due(&self, calling_code: u16, now: DateTime<Utc>) -> Option<u64> {
        let mut warnings = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((warned_at, codes)) = warnings.get_mut(&calling_code) else {
            warnings.insert(calling_code, (now, 0));
            return Some(1);
        };
        *codes += 1;
        // A clock set back does not silence the alarm for as long as it went back.
        if now - *warned_at < SURGE_WARNING_INTERVAL && now >= *warned_at {
            return None;
        }
        let unreported = *codes;
        *warned_at = now;
        *codes = 0;
        Some(unreported)
    }

    async fn watch_for_pumping(&self, to: &PhoneNumber, now: DateTime<Utc>) -> Result<(), Refusal> {
        let calling_code = to.calling_code();
        let hourly = match self.recent_traffic(calling_code, now) {
            Some(hourly) => hourly,
            None => {
                let hourly: Arc<[HourlySends]> = self
                    .limiter
                    .country_sends(calling_code, hour_of(now) - baseline_period())
                    .await?
                    .into();
                self.traffic
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(calling_code, (now, hourly.clone()));
                hourly
            }
        };
        let traffic = Traffic::from_hourly(&hourly, now);
        if !self.config.pumping.is_surge(&traffic) {
            return Ok(());
        }
        if let Some(codes) = self.surge_warning_due(calling_code, now) {
            tracing::warn!(
                calling_code,
                last_hour = traffic.last_hour,
                usual_per_hour = traffic.usual_per_hour,
                refused = self.config.pumping.refuse,
                codes_since_last_warning = codes,
                "possible SMS pumping: codes to this calling code far above their usual rate"
            );
        }
        self.alarm.surge(calling_code, &traffic);
        if self.config.pumping.refuse {
            return Err(Refusal::DestinationPaused { calling_code });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ports::MockRateLimiter;

    use super::*;

    #[tokio::test]
    async fn a_calling_codes_counts_are_read_at_most_once_a_second() {
        let mut limiter = MockRateLimiter::new();
        limiter
            .expect_country_sends()
            .times(2)
            .returning(|_, _| Ok(Vec::new()));
        limiter
            .expect_acquire()
            .returning(|_, _| Ok(Admission::Admitted));
        let guards = SendGuards::new(Arc::new(limiter), GuardConfig::default(), Arc::new(LogOnly));
        let to = PhoneNumber::parse("+15551234567").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        for after in [0, 500, 999, 1_000] {
            guards
                .admit("auth", &to, start + TimeDelta::milliseconds(after))
                .await
                .unwrap();
        }
    }

    /// A log writer that keeps every line for the test to read.
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLogs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct CountingHook(Mutex<u64>);

    impl PumpingAlarmHook for CountingHook {
        fn surge(&self, _calling_code: u16, _traffic: &Traffic) {
            *self.0.lock().unwrap() += 1;
        }
    }

    #[tokio::test]
    async fn a_surge_is_logged_once_a_minute_per_calling_code_and_counted_at_every_code() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let mut limiter = MockRateLimiter::new();
        // Far above a usual rate of nothing, in this hour.
        limiter.expect_country_sends().returning(move |_, _| {
            Ok(vec![HourlySends {
                hour: hour_of(start),
                sends: 500,
            }])
        });
        limiter
            .expect_acquire()
            .returning(|_, _| Ok(Admission::Admitted));
        let hook = Arc::new(CountingHook::default());
        let guards = SendGuards::new(Arc::new(limiter), GuardConfig::default(), hook.clone());
        let us = PhoneNumber::parse("+15551234567").unwrap();
        let uk = PhoneNumber::parse("+447700900123").unwrap();
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);

        for (to, after_seconds) in [
            (&us, 0),
            (&us, 10),
            (&uk, 20),
            (&us, 59),
            (&us, 60),
            (&us, 61),
        ] {
            guards
                .admit("auth", to, start + TimeDelta::seconds(after_seconds))
                .await
                .unwrap();
        }

        drop(guard);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("SMS pumping"))
            .collect();
        assert_eq!(warnings.len(), 3, "{text}");
        assert!(
            warnings[0].contains("calling_code=1 ")
                && warnings[0].contains("codes_since_last_warning=1")
        );
        assert!(
            warnings[1].contains("calling_code=44 ")
                && warnings[1].contains("codes_since_last_warning=1")
        );
        // The codes at 10 s and 59 s were not logged; the one at 60 s stands for them too.
        assert!(
            warnings[2].contains("calling_code=1 ")
                && warnings[2].contains("codes_since_last_warning=3")
        );
        assert_eq!(*hook.0.lock().unwrap(), 6);
    }
}
