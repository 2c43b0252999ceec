//! Daily spend caps in money (the fraud guard's `budget` policy): the budgets as configured,
//! the estimated cost of a message, and when a day's spend deserves a warning. Pure
//! arithmetic on exact [`Amount`]s; the store keeps the day's spend and reserves it atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::Amount;

/// An amount per country (ISO 3166 alpha-2, upper case), with `*` for every other country:
/// `GB:5,NG:1,*:20` or `US:0.0079,*:0.05`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerCountry {
    by_country: BTreeMap<String, Amount>,
    others: Option<Amount>,
}

/// Text that is not a list of `COUNTRY:amount` pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a comma-separated list of COUNTRY:amount pairs (a two-letter country or `*`, a non-negative decimal), each country once")]
pub struct InvalidPerCountry(pub String);

impl PerCountry {
    /// The amount for `country`, else the `*` one, else none.
    pub fn get(&self, country: &str) -> Option<Amount> {
        self.by_country.get(country).copied().or(self.others)
    }

    pub fn is_empty(&self) -> bool {
        self.by_country.is_empty() && self.others.is_none()
    }
}

impl FromStr for PerCountry {
    type Err = InvalidPerCountry;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPerCountry(text.chars().take(80).collect());
        let mut parsed = PerCountry::default();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (country, amount) = pair.split_once(':').ok_or_else(invalid)?;
            let amount: Amount = amount.trim().parse().map_err(|_| invalid())?;
            if amount < Amount::ZERO {
                return Err(invalid());
            }
            let country = country.trim();
            let fresh = if country == "*" {
                parsed.others.replace(amount).is_none()
            } else if country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()) {
                parsed
                    .by_country
                    .insert(country.to_ascii_uppercase(), amount)
                    .is_none()
            } else {
                return Err(invalid());
            };
            if !fresh {
                return Err(invalid());
            }
        }
        Ok(parsed)
    }
}

/// What a day's spend is counted under: every send, one API key's, one country's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpendScope {
    Total,
    ApiKey(String),
    Country(String),
}

impl SpendScope {
    /// The metric label: bounded, never the key or the country itself.
    pub fn label(&self) -> &'static str {
        match self {
            SpendScope::Total => "total",
            SpendScope::ApiKey(_) => "api_key",
            SpendScope::Country(_) => "country",
        }
    }

    /// The key a store counts the scope's spend under.
    pub fn key(&self) -> String {
        match self {
            SpendScope::Total => "total".to_owned(),
            SpendScope::ApiKey(key) => format!("api_key:{key}"),
            SpendScope::Country(country) => format!("country:{country}"),
        }
    }
}

impl fmt::Display for SpendScope {
    /// For a refusal's detail: an API key is not named (the caller knows its own).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpendScope::Total => f.write_str("the daily total"),
            SpendScope::ApiKey(_) => f.write_str("this API key's daily budget"),
            SpendScope::Country(country) => write!(f, "the daily budget for {country}"),
        }
    }
}

/// One cap on one scope's spend in a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendCap {
    pub scope: SpendScope,
    pub cap: Amount,
}

/// The daily budgets (`BUDGET_*`), in one currency; a budget not set is no cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    pub currency: String,
    pub daily_total: Option<Amount>,
    pub daily_per_api_key: Option<Amount>,
    pub daily_per_country: PerCountry,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
            daily_total: None,
            daily_per_api_key: None,
            daily_per_country: PerCountry::default(),
        }
    }
}

impl Budgets {
    /// Whether any budget is set: without one, nothing is estimated or reserved.
    pub fn any(&self) -> bool {
        self.daily_total.is_some()
            || self.daily_per_api_key.is_some()
            || !self.daily_per_country.is_empty()
    }

    /// The caps a send from `api_key` to `country` counts against.
    pub fn caps(&self, api_key: &str, country: &str) -> Vec<SpendCap> {
        let mut caps = Vec::new();
        if let Some(cap) = self.daily_total {
            caps.push(SpendCap {
                scope: SpendScope::Total,
                cap,
            });
        }
        if let Some(cap) = self.daily_per_api_key {
            caps.push(SpendCap {
                scope: SpendScope::ApiKey(api_key.to_owned()),
                cap,
            });
        }
        if let Some(cap) = self.daily_per_country.get(country) {
            caps.push(SpendCap {
                scope: SpendScope::Country(country.to_owned()),
                cap,
            });
        }
        caps
    }
}

/// The estimated cost of a message: its price per segment times its segments. A call (a
/// voice code, no segments) is estimated at one segment's price: about what a short call
/// costs where SMS are cheap, and the settling of reservations gives it back if the call
/// never starts. `None` on an overflow no configured price reaches.
pub fn estimate(price_per_segment: Amount, segments: u32) -> Option<Amount> {
    price_per_segment
        .units()
        .checked_mul(i128::from(segments.max(1)))
        .map(Amount::from_units)
}

/// The price per segment that providers charged, from the sum of their prices and the
/// segments they were for: rounded up to the unit, so an estimate never undercounts. `None`
/// without segments to divide by.
pub fn price_per_segment(charged: Amount, segments: u64) -> Option<Amount> {
    if segments == 0 {
        return None;
    }
    let units = charged.units().unsigned_abs();
    let segments = u128::from(segments);
    let per_segment = units.div_ceil(segments);
    i128::try_from(per_segment).ok().map(Amount::from_units)
}

/// The share of a cap at which a warning fires.
pub const WARNING_PERCENT: i128 = 80;

/// Whether a send that took a scope's spend from `before` to `after` crossed 80% of `cap`:
/// exactly once a day per scope, whatever the sizes of the sends.
pub fn crossed_warning(cap: Amount, before: Amount, after: Amount) -> bool {
    let threshold = cap.units().saturating_mul(WARNING_PERCENT);
    before.units().saturating_mul(100) < threshold && after.units().saturating_mul(100) >= threshold
}

/// The spend as a share of its cap, for a gauge (a float is fine here: it is only watched).
pub fn spend_ratio(cap: Amount, spent: Amount) -> f64 {
    if cap.units() <= 0 {
        return 1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let ratio = spent.units() as f64 / cap.units() as f64;
    ratio
}

/// The UTC day `now` falls on: budgets are per UTC day.
pub fn day_of(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive()
}

/// How long until the next UTC day, when every daily budget starts again.
pub fn until_next_day(now: DateTime<Utc>) -> TimeDelta {
    let next = day_of(now)
        .succ_opt()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc());
    next.map_or(TimeDelta::days(1), |next| next - now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        text.parse().expect("an amount")
    }

    #[test]
    fn per_country_amounts_fall_back_to_the_star() {
        let caps: PerCountry = "GB:5, ng:1,*:20".parse().expect("valid");
        assert_eq!(caps.get("GB"), Some(amount("5")));
        assert_eq!(caps.get("NG"), Some(amount("1")));
        assert_eq!(caps.get("FR"), Some(amount("20")));
        let without_star: PerCountry = "GB:5".parse().expect("valid");
        assert_eq!(without_star.get("FR"), None);
        assert!(""
            .parse::<PerCountry>()
            .expect("empty is no cap")
            .is_empty());
    }

    #[test]
    fn malformed_per_country_lists_are_refused() {
        for text in [
            "GB",
            "GB:x",
            "GBR:5",
            "GB:5,GB:6",
            "*:1,*:2",
            "GB:-1",
            "G1:5",
            "GB:1e3",
        ] {
            assert!(text.parse::<PerCountry>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn an_estimate_is_the_price_times_the_segments_exactly() {
        assert_eq!(estimate(amount("0.0079"), 3), Some(amount("0.0237")));
        // A call has no segments: it is estimated at one segment's price.
        assert_eq!(estimate(amount("0.05"), 0), Some(amount("0.05")));
        // Ten thousand sends at 0.0079 are 79, not 78.99999.
        let mut total = Amount::ZERO;
        for _ in 0..10_000 {
            total = total
                .checked_add(estimate(amount("0.0079"), 1).expect("fits"))
                .expect("fits");
        }
        assert_eq!(total, amount("79"));
    }

    #[test]
    fn a_charged_price_per_segment_is_rounded_up_and_positive() {
        assert_eq!(
            price_per_segment(amount("-0.0237"), 3),
            Some(amount("0.0079"))
        );
        assert_eq!(
            price_per_segment(amount("0.00000010"), 3),
            Some(amount("0.00000004"))
        );
        assert_eq!(price_per_segment(amount("1"), 0), None);
    }

    #[test]
    fn the_warning_fires_once_when_the_spend_crosses_eighty_percent() {
        let cap = amount("10");
        assert!(!crossed_warning(cap, amount("7"), amount("7.99999999")));
        assert!(crossed_warning(cap, amount("7.99999999"), amount("8")));
        assert!(crossed_warning(cap, amount("1"), amount("9.5")));
        assert!(!crossed_warning(cap, amount("8"), amount("9")));
    }

    #[test]
    fn caps_name_only_the_budgets_set() {
        let budgets = Budgets {
            daily_total: Some(amount("100")),
            daily_per_country: "GB:5,*:20".parse().expect("valid"),
            ..Budgets::default()
        };
        let caps = budgets.caps("key-1", "FR");
        assert_eq!(
            caps,
            vec![
                SpendCap {
                    scope: SpendScope::Total,
                    cap: amount("100")
                },
                SpendCap {
                    scope: SpendScope::Country("FR".to_owned()),
                    cap: amount("20")
                },
            ]
        );
        assert!(!Budgets::default().any());
    }

    #[test]
    fn a_day_ends_at_midnight_utc() {
        let now = "2026-12-05T23:30:00Z".parse().expect("a time");
        assert_eq!(until_next_day(now), TimeDelta::minutes(30));
        assert_eq!(day_of(now).to_string(), "2026-12-05");
    }
}
