//! The traffic model's parameters, read from a TOML file (`params.toml` beside this crate):
//! what legitimate traffic looks like, the surge and the attacks, kept out of the code so that
//! anyone can change the traffic and rerun without reading the simulation. Everything is
//! checked on load, numbers included: every range must give numbers that libphonenumber (the
//! `phonenumber` crate, through [`LineType::of`]) takes for the line type the file claims, so
//! that an attack on "mobile numbers" is not quietly refused as invalid ones.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context as _};
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use domain::fraud::LineType;
use domain::PhoneNumber;
use rand::Rng;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub seed: u64,
    pub days: u32,
    /// Midnight UTC of the first simulated day.
    pub start: DateTime<Utc>,
    /// The service's settings, as its environment would give them (`FRAUD_MODE`,
    /// `PUMPING_REFUSE`, ...). `DATABASE_URL` is the simulation's own.
    #[serde(default)]
    pub service: BTreeMap<String, String>,
    pub legitimate: Legitimate,
    pub behaviour: Behaviour,
    pub countries: Vec<Country>,
    pub surge: Surge,
    pub attacks: Attacks,
    /// What `--short` changes.
    pub short: Short,
    pub targets: Targets,
}

/// The short run: fewer days and users, the attacks and the surge moved to one day.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Short {
    pub days: u32,
    pub users_per_day: f64,
    pub day: u32,
    /// UTC `HH:MM` of each attack (by its name in `attacks`) and of `surge`.
    pub at: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Legitimate {
    /// Users asking for a code, per day, over every country (before the surge).
    pub users_per_day: f64,
    /// The client services (API keys) users come through, with their shares.
    pub api_keys: Vec<Share>,
    /// The quietest hour's rate as a share of the busiest one's, in each country's local time.
    pub night_share: f64,
    /// The local hour of the busiest traffic.
    pub peak_hour: f64,
    /// Users behind an address many share (carrier-grade NAT, offices).
    pub shared_ip_share: f64,
    pub shared_ips_per_country: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub name: String,
    pub share: f64,
}

/// What users do once asked for a code. Each user's plan is drawn when they arrive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Seconds from the code's request to the user typing it.
    pub check_delay_seconds: [u32; 2],
    /// Of converting users: their first SMS is late, so they ask again and type the new code.
    pub retry_share: f64,
    pub retry_after_seconds: [u32; 2],
    /// Of converting users: a wrong code first, then the right one.
    pub mistype_share: f64,
    pub mistype_fix_seconds: [u32; 2],
    /// Of users who never convert: they ask again once before giving up.
    pub lost_retry_share: f64,
    /// Of users who never convert: they type one or two wrong codes, then give up.
    pub lost_wrong_share: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Country {
    pub iso: String,
    /// Its weight in legitimate traffic (the weights need not add up to one).
    pub share: f64,
    /// Hours from UTC, for its daily cycle.
    pub utc_offset: f64,
    /// Share of its users who end approved.
    pub conversion: f64,
    /// Its mobile ranges, as [`NumberPattern`]s.
    pub ranges: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surge {
    pub country: String,
    pub day: u32,
    /// UTC, `HH:MM`.
    pub at: String,
    pub hours: u32,
    /// The country's traffic during the surge as a multiple of its usual.
    pub multiple: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attacks {
    /// (a) Codes to sequential numbers of one range; nobody checks.
    pub sequential: Sequential,
    /// (b) A slow drip to one country's premium-rate range.
    pub premium_drip: PremiumDrip,
    /// (c) Many prefixes of one country, a few dozen codes each.
    pub prefixes: Prefixes,
    /// (d) One address, across many countries.
    pub one_ip: FromAddresses,
    /// (d) One /24 range, across many countries.
    pub one_range: FromAddresses,
}

/// When an attack starts and through which client service it comes (a pumping bot uses the
/// victim's sign-up page, so its codes come under a real client's API key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub api_key: String,
    pub day: u32,
    /// UTC, `HH:MM`.
    pub at: String,
    pub minutes: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequential {
    #[serde(flatten)]
    pub when: When,
    /// The first number of the range, E.164.
    pub first: String,
    pub numbers: u32,
    pub codes: u32,
    /// Where the bot's requests come from, an [`AddressPool`].
    pub ip: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PremiumDrip {
    #[serde(flatten)]
    pub when: When,
    /// A [`NumberPattern`] whose numbers are premium-rate.
    pub range: String,
    pub per_hour: u32,
    /// An [`AddressPool`].
    pub ip: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefixes {
    #[serde(flatten)]
    pub when: When,
    /// The first number of the first prefix (ending in 000).
    pub first: String,
    pub prefixes: u32,
    /// Thousands between one prefix and the next.
    pub stride: u32,
    pub codes_per_prefix: u32,
    /// An [`AddressPool`].
    pub ip: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromAddresses {
    #[serde(flatten)]
    pub when: When,
    /// An [`AddressPool`]: one address (`198.51.100.7`), a /24 (`203.0.113.0/24`) or
    /// `proxies`.
    pub ip: String,
    pub codes: u32,
    /// The countries whose mobile ranges (from `countries`) are asked for, in turn.
    pub countries: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Codes of each attack let through before it counts: a guard must see some of an attack
    /// to know it.
    pub attack_grace_codes: u32,
    /// At least this share of each attack's codes after its grace refused.
    pub attack_refused_min: f64,
    /// At most this share of legitimate codes (the surge's included) refused.
    pub legitimate_refused_max: f64,
}

impl Params {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let params: Params =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        params
            .check()
            .with_context(|| format!("{} is not valid", path.display()))?;
        Ok(params)
    }

    /// Refuses what would make a run meaningless: empty or impossible shares, ranges whose
    /// numbers are not of the line type claimed, events outside the run are only warned of
    /// (a shorter `--days` may cut them).
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(self.days > 0, "days: at least one");
        ensure!(
            self.legitimate.users_per_day > 0.0,
            "legitimate.users_per_day: positive"
        );
        ensure!(
            !self.legitimate.api_keys.is_empty(),
            "legitimate.api_keys: at least one"
        );
        ensure!(
            (0.0..=1.0).contains(&self.legitimate.night_share),
            "legitimate.night_share: between 0 and 1"
        );
        for share in &self.legitimate.api_keys {
            ensure!(
                share.share > 0.0,
                "api key {}: share must be positive",
                share.name
            );
        }
        ensure!(!self.countries.is_empty(), "countries: at least one");
        // Every range's problem at once: they are found by drawing numbers, one at a time.
        let mut bad_ranges = Vec::new();
        for country in &self.countries {
            ensure!(
                country.share > 0.0,
                "{}: share must be positive",
                country.iso
            );
            ensure!(
                (0.0..=1.0).contains(&country.conversion),
                "{}: conversion between 0 and 1",
                country.iso
            );
            ensure!(!country.ranges.is_empty(), "{}: no ranges", country.iso);
            for range in &country.ranges {
                if let Err(error) = NumberPattern::parse(range).and_then(|pattern| {
                    pattern.check_line_type(&[LineType::Mobile, LineType::FixedLineOrMobile])
                }) {
                    bad_ranges.push(format!("{}: {error:#}", country.iso));
                }
            }
        }
        ensure!(bad_ranges.is_empty(), "{}", bad_ranges.join("\n"));
        self.country(&self.surge.country)?;
        parse_at(&self.surge.at)?;

        let attacks = &self.attacks;
        for when in self.attack_times() {
            parse_at(&when.at)?;
            ensure!(when.minutes > 0, "an attack lasts at least a minute");
            self.api_key(&when.api_key)?;
        }
        let sequential = &attacks.sequential;
        let first = e164_digits(&sequential.first)?;
        for offset in [0, u64::from(sequential.numbers.saturating_sub(1))] {
            check_number(
                &format!("+{}", first + offset),
                &[LineType::Mobile, LineType::FixedLineOrMobile],
            )
            .context("attacks.sequential")?;
        }
        NumberPattern::parse(&attacks.premium_drip.range)?
            .check_line_type(&[LineType::PremiumRate])
            .context("attacks.premium_drip.range")?;
        let prefixes = &attacks.prefixes;
        let first = e164_digits(&prefixes.first)?;
        ensure!(first % 1000 == 0, "attacks.prefixes.first: must end in 000");
        let last = first + u64::from(prefixes.prefixes.saturating_sub(1) * prefixes.stride) * 1000;
        for number in [first, last + 999] {
            check_number(
                &format!("+{number}"),
                &[LineType::Mobile, LineType::FixedLineOrMobile],
            )
            .context("attacks.prefixes")?;
        }
        for attack in [&attacks.one_ip, &attacks.one_range] {
            AddressPool::parse(&attack.ip)?;
            ensure!(
                !attack.countries.is_empty(),
                "an attack from addresses needs countries"
            );
            for iso in &attack.countries {
                self.country(iso)?;
            }
        }
        AddressPool::parse(&sequential.ip)?;
        AddressPool::parse(&attacks.premium_drip.ip)?;
        AddressPool::parse(&attacks.prefixes.ip)?;
        ensure!(
            (0.0..=1.0).contains(&self.targets.attack_refused_min)
                && (0.0..=1.0).contains(&self.targets.legitimate_refused_max),
            "targets: shares between 0 and 1"
        );
        Ok(())
    }

    /// These parameters for the short run.
    pub fn shortened(&self) -> anyhow::Result<Self> {
        let short = &self.short;
        let mut params = self.clone();
        params.days = short.days;
        params.legitimate.users_per_day = short.users_per_day;
        let at = |name: &str| {
            short
                .at
                .get(name)
                .cloned()
                .with_context(|| format!("short.at: no time for {name}"))
        };
        params.surge.day = short.day;
        params.surge.at = at("surge")?;
        let attacks = &mut params.attacks;
        for (name, when) in [
            ("sequential", &mut attacks.sequential.when),
            ("premium_drip", &mut attacks.premium_drip.when),
            ("prefixes", &mut attacks.prefixes.when),
            ("one_ip", &mut attacks.one_ip.when),
            ("one_range", &mut attacks.one_range.when),
        ] {
            when.day = short.day;
            when.at = at(name)?;
        }
        ensure!(
            short.at.len() == 6,
            "short.at: one time for each attack and the surge"
        );
        params.check().context("the short run")?;
        Ok(params)
    }

    pub fn attack_times(&self) -> [&When; 5] {
        let attacks = &self.attacks;
        [
            &attacks.sequential.when,
            &attacks.premium_drip.when,
            &attacks.prefixes.when,
            &attacks.one_ip.when,
            &attacks.one_range.when,
        ]
    }

    pub fn country(&self, iso: &str) -> anyhow::Result<&Country> {
        self.countries
            .iter()
            .find(|country| country.iso == iso)
            .with_context(|| format!("no country {iso} in countries"))
    }

    fn api_key(&self, name: &str) -> anyhow::Result<()> {
        ensure!(
            self.legitimate.api_keys.iter().any(|key| key.name == name),
            "no API key {name} in legitimate.api_keys"
        );
        Ok(())
    }

    /// The time `day` (1 for the first) at `at` (UTC `HH:MM`).
    pub fn time_of(&self, day: u32, at: &str) -> anyhow::Result<DateTime<Utc>> {
        ensure!(day >= 1, "days are counted from 1");
        let at = parse_at(at)?;
        Ok(self.start + TimeDelta::days(i64::from(day) - 1) + (at - NaiveTime::MIN))
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start + TimeDelta::days(i64::from(self.days))
    }
}

fn parse_at(at: &str) -> anyhow::Result<NaiveTime> {
    NaiveTime::parse_from_str(at, "%H:%M").with_context(|| format!("`{at}` is not HH:MM"))
}

/// The digits of an E.164 number, as a number (so that a range can be counted through).
fn e164_digits(number: &str) -> anyhow::Result<u64> {
    number
        .strip_prefix('+')
        .and_then(|digits| digits.parse().ok())
        .with_context(|| format!("`{number}` is not +digits"))
}

fn check_number(number: &str, types: &[LineType]) -> anyhow::Result<()> {
    let parsed = PhoneNumber::parse(number).with_context(|| format!("{number} does not parse"))?;
    let line_type = LineType::of(&parsed);
    ensure!(
        types.contains(&line_type),
        "{number} is {line_type}, not {}",
        types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    );
    Ok(())
}

/// A range of numbers written as their digits: `+44 7[7-9]XX XXXXXX` is `+44`, `7`, one of
/// 7 to 9, then eight digits of any value. Spaces are for reading.
#[derive(Debug, Clone)]
pub struct NumberPattern {
    text: String,
    digits: Vec<Digit>,
}

#[derive(Debug, Clone, Copy)]
enum Digit {
    Fixed(u8),
    Between(u8, u8),
}

/// How many numbers of a pattern are drawn to check its line type.
const SAMPLES_CHECKED: usize = 200;

impl NumberPattern {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some(rest) = text.strip_prefix('+') else {
            bail!("range `{text}` does not start with +");
        };
        let mut digits = Vec::new();
        let mut chars = rest.chars().filter(|c| *c != ' ');
        while let Some(c) = chars.next() {
            match c {
                '0'..='9' => digits.push(Digit::Fixed(c as u8 - b'0')),
                'X' => digits.push(Digit::Between(0, 9)),
                '[' => {
                    let class: String = chars.by_ref().take_while(|c| *c != ']').collect();
                    let bounds: Vec<u8> = class
                        .split('-')
                        .filter_map(|bound| bound.parse().ok())
                        .collect();
                    match bounds[..] {
                        [low, high] if low <= high && high <= 9 => {
                            digits.push(Digit::Between(low, high));
                        }
                        _ => bail!("range `{text}`: `[{class}]` is not [low-high]"),
                    }
                }
                other => bail!("range `{text}`: unexpected `{other}`"),
            }
        }
        ensure!(
            digits.len() >= 8,
            "range `{text}` is too short to be a number"
        );
        Ok(Self {
            text: text.to_owned(),
            digits,
        })
    }

    /// A number of the range, drawn uniformly.
    pub fn draw(&self, rng: &mut impl Rng) -> String {
        let mut number = String::with_capacity(self.digits.len() + 1);
        number.push('+');
        for digit in &self.digits {
            let value = match *digit {
                Digit::Fixed(value) => value,
                Digit::Between(low, high) => rng.random_range(low..=high),
            };
            number.push(char::from(b'0' + value));
        }
        number
    }

    /// Draws numbers of the range (with a fixed seed) and refuses the range unless every one
    /// is of one of `types`.
    fn check_line_type(&self, types: &[LineType]) -> anyhow::Result<()> {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        for _ in 0..SAMPLES_CHECKED {
            check_number(&self.draw(&mut rng), types)
                .with_context(|| format!("range `{}`", self.text))?;
        }
        Ok(())
    }
}

/// The addresses an attack comes from: one, a /24 drawn from at random, or `proxies`
/// (residential proxies: a fresh address anywhere for each request).
#[derive(Debug, Clone)]
pub enum AddressPool {
    One(String),
    Range24([u8; 3]),
    Proxies,
}

impl AddressPool {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if text == "proxies" {
            return Ok(AddressPool::Proxies);
        }
        let (address, range) = match text.split_once('/') {
            Some((address, "24")) => (address, true),
            Some(_) => bail!("`{text}`: only one address or a /24"),
            None => (text, false),
        };
        let address: std::net::Ipv4Addr = address
            .parse()
            .with_context(|| format!("`{text}` is not an IPv4 address"))?;
        let [a, b, c, _] = address.octets();
        Ok(if range {
            AddressPool::Range24([a, b, c])
        } else {
            AddressPool::One(address.to_string())
        })
    }

    pub fn draw(&self, rng: &mut impl Rng) -> String {
        match self {
            AddressPool::One(address) => address.clone(),
            AddressPool::Proxies => crate::traffic::user_address(rng),
            AddressPool::Range24([a, b, c]) => {
                format!("{a}.{b}.{c}.{}", rng.random_range(1..=254u8))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_draws_numbers_of_its_shape() {
        let pattern = NumberPattern::parse("+44 7[7-9]XX XXXXXX").unwrap();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..100 {
            let number = pattern.draw(&mut rng);
            assert_eq!(number.len(), 13, "{number}");
            assert!(number.starts_with("+447"), "{number}");
            assert!(matches!(number.as_bytes()[4], b'7'..=b'9'), "{number}");
        }
        assert!(NumberPattern::parse("44 7XXX").is_err());
        assert!(NumberPattern::parse("+44 7[9-7]XX XXXXXX").is_err());
    }

    #[test]
    fn a_range_of_numbers_of_another_line_type_is_refused() {
        let premium = NumberPattern::parse("+44 909 XXX XXXX").unwrap();
        let error = premium.check_line_type(&[LineType::Mobile]).unwrap_err();
        assert!(format!("{error:#}").contains("premium_rate"), "{error:#}");
        premium.check_line_type(&[LineType::PremiumRate]).unwrap();
    }

    #[test]
    fn the_committed_parameters_are_valid_for_the_full_and_the_short_run() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("params.toml");
        let params = Params::read(&path).unwrap_or_else(|error| panic!("{error:#}"));
        let short = params
            .shortened()
            .unwrap_or_else(|error| panic!("{error:#}"));
        assert!(short.days < params.days);
        for when in short.attack_times() {
            let end = short.time_of(when.day, &when.at).unwrap()
                + TimeDelta::minutes(i64::from(when.minutes));
            assert!(end <= short.end(), "{when:?} ends after the short run");
        }
    }
}
