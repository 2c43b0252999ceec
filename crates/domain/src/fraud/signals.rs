//! What the guard judges from: hourly counts of codes per country, prefix, API key and client
//! IP (sent, refused, checked, approved), and the two judgements made of them, conversion and
//! surge.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Prefix, UnknownName};
use crate::pumping::{hour_of, HourlySends, Traffic};
use crate::PhoneNumber;

/// How far back a country's usual conversion is measured, and how long hourly counts are
/// kept: long enough that a week's cycle is in it twice.
pub fn signal_baseline_period() -> TimeDelta {
    TimeDelta::days(14)
}

/// What a count is kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalScope {
    /// ISO 3166 code (`GB`), or `+` and the calling code of a number in no country.
    Country,
    Prefix,
    ApiKey,
    /// An address, or a range of them (`203.0.113.0/24`), as the caller names it.
    ClientIp,
}

impl SignalScope {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalScope::Country => "country",
            SignalScope::Prefix => "prefix",
            SignalScope::ApiKey => "api_key",
            SignalScope::ClientIp => "client_ip",
        }
    }
}

impl FromStr for SignalScope {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "country" => Ok(SignalScope::Country),
            "prefix" => Ok(SignalScope::Prefix),
            "api_key" => Ok(SignalScope::ApiKey),
            "client_ip" => Ok(SignalScope::ClientIp),
            other => Err(UnknownName::new("signal scope", other)),
        }
    }
}

/// One thing codes are counted per: a scope and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalKey {
    pub scope: SignalScope,
    pub value: String,
}

impl SignalKey {
    pub fn country_of(number: &PhoneNumber) -> Self {
        Self {
            scope: SignalScope::Country,
            value: number
                .country()
                .unwrap_or_else(|| format!("+{}", number.calling_code())),
        }
    }

    pub fn prefix(prefix: &Prefix) -> Self {
        Self {
            scope: SignalScope::Prefix,
            value: prefix.as_str().to_owned(),
        }
    }

    pub fn api_key(name: &str) -> Self {
        Self {
            scope: SignalScope::ApiKey,
            value: name.to_owned(),
        }
    }

    pub fn client_ip(address: &str) -> Self {
        Self {
            scope: SignalScope::ClientIp,
            value: address.to_owned(),
        }
    }
}

impl fmt::Display for SignalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scope.as_str(), self.value)
    }
}

/// What happened to a code, each counted in the hour the code was asked for: a check or an
/// approval minutes later still counts for the code it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeEvent {
    /// The code was generated and queued.
    Sent,
    /// The guard or a limit refused it: traffic that goes on while a prefix is blocked.
    Refused,
    /// Its verification saw its first check (right or wrong): a person is there.
    Checked,
    /// Its verification was approved.
    Approved,
}

impl CodeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeEvent::Sent => "sent",
            CodeEvent::Refused => "refused",
            CodeEvent::Checked => "checked",
            CodeEvent::Approved => "approved",
        }
    }
}

/// The codes of one signal key asked for in the hour starting at `hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodeCounts {
    pub hour: DateTime<Utc>,
    pub sent: u64,
    pub refused: u64,
    pub checked: u64,
    pub approved: u64,
}

impl CodeCounts {
    pub fn at(hour: DateTime<Utc>) -> Self {
        Self {
            hour,
            ..Self::default()
        }
    }

    /// Codes asked for, sent or not: the volume a surge is judged on.
    pub fn requested(&self) -> u64 {
        self.sent + self.refused
    }

    /// Sent codes whose verification saw no check (yet).
    pub fn unchecked(&self) -> u64 {
        self.sent.saturating_sub(self.checked)
    }
}

/// Requests per hour, the shape the pumping alarm's arithmetic reads.
/// How far back a country's codes must go before its surges are judged.
pub const COUNTRY_HISTORY_TO_JUDGE: TimeDelta = TimeDelta::hours(24);

fn requested_per_hour(hourly: &[CodeCounts]) -> Vec<HourlySends> {
    hourly
        .iter()
        .map(|counts| HourlySends {
            hour: counts.hour,
            sends: counts.requested(),
        })
        .collect()
}

/// How a set of codes converted, counting only the codes old enough to have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Conversion {
    /// Codes sent at least the grace period ago: within an hour still going on, estimated from
    /// the part of it that is that old (codes are taken to come evenly over the hour).
    pub settled: f64,
    pub checked: u64,
    pub approved: u64,
}

impl Conversion {
    /// The codes of the hours that start in `[since, until)`, as of `now`.
    pub fn of(
        hourly: &[CodeCounts],
        (since, until): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
        grace: TimeDelta,
    ) -> Self {
        let cutoff = now - grace;
        let mut conversion = Self::default();
        for counts in hourly
            .iter()
            .filter(|counts| counts.hour >= since && counts.hour < until)
        {
            let end = (counts.hour + TimeDelta::hours(1)).min(now);
            let span = (end - counts.hour).num_milliseconds();
            let old_enough = (cutoff - counts.hour).num_milliseconds();
            let share = if span <= 0 {
                0.0
            } else {
                (old_enough as f64 / span as f64).clamp(0.0, 1.0)
            };
            conversion.settled += counts.sent as f64 * share;
            conversion.checked += counts.checked;
            conversion.approved += counts.approved;
        }
        conversion
    }

    /// Checked codes per settled code (at most 1: young codes are checked too).
    pub fn check_rate(&self) -> f64 {
        rate(self.checked, self.settled)
    }

    pub fn approval_rate(&self) -> f64 {
        rate(self.approved, self.settled)
    }
}

fn rate(part: u64, settled: f64) -> f64 {
    if settled <= 0.0 {
        0.0
    } else {
        (part as f64 / settled).min(1.0)
    }
}

/// When a prefix converts too little to keep sending it codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConversionPolicy {
    /// The recent codes judged: those of the hours starting in this period before now.
    pub window: TimeDelta,
    /// How long a person takes to check a code: younger codes are not judged yet.
    pub grace: TimeDelta,
    /// Settled recent codes below which a prefix is not judged (a cold start).
    pub min_codes: u64,
    /// Settled codes a country's baseline needs; below, its prefixes are not judged.
    pub baseline_min_codes: u64,
    /// A prefix converting below this share of its country's usual rate converts too little.
    pub low_ratio: f64,
    /// A surge converting at least this share of the usual rate is legitimate traffic (a
    /// product launch), not pumping.
    pub usual_ratio: f64,
}

impl Default for ConversionPolicy {
    fn default() -> Self {
        Self {
            window: TimeDelta::hours(2),
            grace: TimeDelta::minutes(3),
            min_codes: 10,
            baseline_min_codes: 200,
            low_ratio: 0.25,
            usual_ratio: 0.5,
        }
    }
}

/// How recent codes converted against the usual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConversionJudgement {
    /// Too few settled codes, recent or usual, to tell: never blocked on conversion alone.
    TooLittleHistory {
        recent: Conversion,
        usual: Conversion,
    },
    Judged {
        recent: Conversion,
        usual: Conversion,
        /// The recent rate as a share of the usual one: the lower of the check rates' and the
        /// approval rates' shares.
        relative: f64,
    },
}

impl ConversionPolicy {
    /// Judges the codes of `recent` (a prefix's or a country's hourly counts) in the window,
    /// against the codes of `usual` (its country's) before the window, over the baseline period.
    pub fn judge(
        &self,
        recent: &[CodeCounts],
        usual: &[CodeCounts],
        now: DateTime<Utc>,
    ) -> ConversionJudgement {
        let window_start = hour_of(now) + TimeDelta::hours(1) - self.window;
        let recent = Conversion::of(
            recent,
            (window_start, DateTime::<Utc>::MAX_UTC),
            now,
            self.grace,
        );
        let usual = Conversion::of(
            usual,
            (window_start - signal_baseline_period(), window_start),
            now,
            self.grace,
        );
        if recent.settled < self.min_codes as f64 || usual.settled < self.baseline_min_codes as f64
        {
            return ConversionJudgement::TooLittleHistory { recent, usual };
        }
        let share = |recent_rate: f64, usual_rate: f64| {
            if usual_rate <= 0.0 {
                1.0
            } else {
                recent_rate / usual_rate
            }
        };
        let relative = share(recent.check_rate(), usual.check_rate())
            .min(share(recent.approval_rate(), usual.approval_rate()));
        ConversionJudgement::Judged {
            recent,
            usual,
            relative,
        }
    }

    pub fn is_low(&self, judgement: &ConversionJudgement) -> bool {
        matches!(judgement, ConversionJudgement::Judged { relative, .. } if *relative < self.low_ratio)
    }

    /// Whether the codes are shown to convert as usual (too little history shows nothing).
    pub fn is_usual(&self, judgement: &ConversionJudgement) -> bool {
        matches!(judgement, ConversionJudgement::Judged { relative, .. } if *relative >= self.usual_ratio)
    }
}

/// When a prefix's volume surges beyond what its country's traffic explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixSurgePolicy {
    /// A surge is more codes in the last hour than this multiple of the prefix's usual rate,
    /// scaled by how far its country is above its own.
    pub surge_multiple: u32,
    /// Fewer codes than this in an hour are never a surge.
    pub min_sends: u64,
}

impl Default for PrefixSurgePolicy {
    fn default() -> Self {
        Self {
            surge_multiple: 5,
            min_sends: 10,
        }
    }
}

impl PrefixSurgePolicy {
    /// The prefix's traffic when it surges, with its usual rate scaled by its country's: a
    /// country at five times its usual rate (a launch) raises every prefix's expected rate
    /// alike, so only a prefix taking far more than its share surges.
    pub fn surge(
        &self,
        prefix: &[CodeCounts],
        country: &[CodeCounts],
        now: DateTime<Utc>,
    ) -> Option<Traffic> {
        let prefix = Traffic::from_hourly(&requested_per_hour(prefix), now);
        let country = Traffic::from_hourly(&requested_per_hour(country), now);
        let country_factor = if country.usual_per_hour > 0.0 {
            (country.last_hour as f64 / country.usual_per_hour).max(1.0)
        } else {
            1.0
        };
        let expected = Traffic {
            usual_per_hour: prefix.usual_per_hour * country_factor,
            ..prefix
        };
        let pumping = crate::PumpingPolicy {
            surge_multiple: self.surge_multiple,
            min_sends: self.min_sends,
            refuse: true,
        };
        pumping.is_surge(&expected).then_some(expected)
    }
}

/// A country's traffic when it surges by the pumping alarm's arithmetic (`PUMPING_*`).
pub(crate) fn country_surge(
    policy: &crate::PumpingPolicy,
    country: &[CodeCounts],
    now: DateTime<Utc>,
) -> Option<Traffic> {
    // A cold start: a country first sent to less than a day ago has no usual rate to surge
    // past (on a new deployment every country would "surge" in its first hours).
    let oldest = country.iter().map(|counts| counts.hour).min()?;
    if now - oldest < COUNTRY_HISTORY_TO_JUDGE {
        return None;
    }
    let traffic = Traffic::from_hourly(&requested_per_hour(country), now);
    policy.is_surge(&traffic).then_some(traffic)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn noon() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Hourly counts `hours_ago` hours before `now`'s hour: `(hours_ago, sent, checked,
    /// approved)`.
    pub(crate) fn hourly(now: DateTime<Utc>, counts: &[(i64, u64, u64, u64)]) -> Vec<CodeCounts> {
        counts
            .iter()
            .map(|&(hours_ago, sent, checked, approved)| CodeCounts {
                hour: hour_of(now) - TimeDelta::hours(hours_ago),
                sent,
                refused: 0,
                checked,
                approved,
            })
            .collect()
    }

    /// A country's usual traffic: `per_hour` codes an hour for a week before the last two
    /// hours, `rate` of them checked and approved.
    pub(crate) fn usual_country(now: DateTime<Utc>, per_hour: u64, rate: f64) -> Vec<CodeCounts> {
        let converted = (per_hour as f64 * rate).round() as u64;
        hourly(
            now,
            &(2..24 * 7)
                .map(|hours_ago| (hours_ago, per_hour, converted, converted))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn codes_younger_than_the_grace_period_are_not_judged_yet() {
        // Half past noon: the 12:00 hour's 60 codes came evenly, so the 27 minutes of them
        // older than 3 minutes hold 54.
        let now = noon();
        let counts = hourly(now, &[(0, 60, 0, 0), (1, 100, 90, 80)]);
        let policy = ConversionPolicy::default();
        let conversion = Conversion::of(
            &counts,
            (hour_of(now), DateTime::<Utc>::MAX_UTC),
            now,
            policy.grace,
        );
        assert!((conversion.settled - 54.0).abs() < 1e-9);
        let both = Conversion::of(
            &counts,
            (hour_of(now) - TimeDelta::hours(1), DateTime::<Utc>::MAX_UTC),
            now,
            policy.grace,
        );
        assert!((both.settled - 154.0).abs() < 1e-9);
        assert_eq!((both.checked, both.approved), (90, 80));
    }

    #[test]
    fn a_range_nobody_checks_converts_too_little_against_its_country() {
        let now = noon();
        let country = usual_country(now, 400, 0.8);
        let range = hourly(now, &[(0, 40, 0, 0)]);
        let policy = ConversionPolicy::default();
        let judgement = policy.judge(&range, &country, now);
        assert!(policy.is_low(&judgement), "{judgement:?}");
        assert!(!policy.is_usual(&judgement));
    }

    #[test]
    fn a_range_converting_like_its_country_is_usual() {
        let now = noon();
        let country = usual_country(now, 400, 0.8);
        // A little lower than the country (retries and typos), well above a quarter of it.
        let range = hourly(now, &[(0, 20, 12, 11), (1, 20, 15, 14)]);
        let policy = ConversionPolicy::default();
        let judgement = policy.judge(&range, &country, now);
        assert!(!policy.is_low(&judgement));
        assert!(policy.is_usual(&judgement), "{judgement:?}");
    }

    #[test]
    fn a_cold_start_is_never_judged_on_conversion() {
        let now = noon();
        let policy = ConversionPolicy::default();
        let unchecked = hourly(now, &[(0, 500, 0, 0)]);
        // A country with a few codes of history only.
        let thin = hourly(now, &[(5, 20, 18, 18), (6, 20, 18, 18)]);
        let judgement = policy.judge(&unchecked, &thin, now);
        assert!(matches!(
            judgement,
            ConversionJudgement::TooLittleHistory { .. }
        ));
        assert!(!policy.is_low(&judgement));
        // A prefix with fewer settled codes than the minimum: 8, all of them old enough.
        let few = hourly(now, &[(1, 8, 0, 0)]);
        let judgement = policy.judge(&few, &usual_country(now, 400, 0.8), now);
        assert!(matches!(
            judgement,
            ConversionJudgement::TooLittleHistory { .. }
        ));
    }

    #[test]
    fn a_range_pumped_from_nothing_surges() {
        let now = noon();
        let country = usual_country(now, 400, 0.8);
        let range = hourly(now, &[(0, 30, 0, 0)]);
        let traffic = PrefixSurgePolicy::default()
            .surge(&range, &country, now)
            .unwrap();
        assert_eq!(traffic.last_hour, 30);
        // Nine codes are not enough to call a surge.
        let quiet = hourly(now, &[(0, 9, 0, 0)]);
        assert!(PrefixSurgePolicy::default()
            .surge(&quiet, &country, now)
            .is_none());
    }

    #[test]
    fn a_range_rising_with_its_whole_country_does_not_surge() {
        let now = noon();
        // The range usually takes 3 codes an hour of its country's 400; now both run at five
        // times that, and the range a little more.
        let mut country = usual_country(now, 400, 0.8);
        country.extend(hourly(now, &[(0, 1_000, 0, 0), (1, 2_000, 1_600, 1_600)]));
        let mut range = hourly(
            now,
            &(2..24 * 7)
                .map(|hours_ago| (hours_ago, 3, 2, 2))
                .collect::<Vec<_>>(),
        );
        range.extend(hourly(now, &[(0, 9, 0, 0), (1, 18, 14, 14)]));
        let policy = PrefixSurgePolicy::default();
        assert!(policy.surge(&range, &country, now).is_none());
        // The same range alone at that volume, its country as usual, surges.
        assert!(policy
            .surge(&range, &usual_country(now, 400, 0.8), now)
            .is_some());
    }

    #[test]
    fn refused_codes_count_as_traffic_but_not_as_unchecked_codes() {
        let counts = CodeCounts {
            hour: noon(),
            sent: 5,
            refused: 20,
            checked: 1,
            approved: 1,
        };
        assert_eq!(counts.requested(), 25);
        assert_eq!(counts.unchecked(), 4);
    }
}
