//! The traffic model: who asks for codes, when, to which numbers, from which addresses, and
//! what each user then does (type the code, mistype it, ask again, give up). It knows nothing
//! of the guard: it is the world the guard lives in, drawn from a seeded generator so that a
//! run is reproducible from its seed.
//!
//! Legitimate users arrive as a Poisson process whose rate follows each country's daily cycle
//! in its local time; each user's whole plan is drawn on arrival, so that the traffic does not
//! depend on the guard's answers (but for what a refused user no longer does).

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::params::{AddressPool, Country, NumberPattern, Params, When};

/// Where a request comes from, for the tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Legitimate,
    /// The extra users of the legitimate surge (the country's usual users stay `Legitimate`).
    Surge,
    Attack(Attack),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attack {
    Sequential,
    PremiumDrip,
    Prefixes,
    OneIp,
    OneRange,
}

impl Attack {
    pub const ALL: [Attack; 5] = [
        Attack::Sequential,
        Attack::PremiumDrip,
        Attack::Prefixes,
        Attack::OneIp,
        Attack::OneRange,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Attack::Sequential => "(a) sequential numbers of one range",
            Attack::PremiumDrip => "(b) slow drip to a premium range",
            Attack::Prefixes => "(c) many prefixes of one country",
            Attack::OneIp => "(d) one IP, many countries",
            Attack::OneRange => "(d) one /24, many countries",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Attack::Sequential => "a_sequential",
            Attack::PremiumDrip => "b_premium_drip",
            Attack::Prefixes => "c_prefixes",
            Attack::OneIp => "d_one_ip",
            Attack::OneRange => "d_one_range",
        }
    }
}

impl Stream {
    pub fn is_legitimate(self) -> bool {
        matches!(self, Stream::Legitimate | Stream::Surge)
    }
}

/// One user (or one bot request) and what they will do.
#[derive(Debug, Clone)]
pub struct Session {
    pub stream: Stream,
    pub api_key: String,
    /// E.164.
    pub to: String,
    pub client_ip: String,
    /// What they do after the first request, in order, each at its offset from arrival.
    pub steps: Vec<(TimeDelta, Step)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Asks for a code (again, when one is pending: a resend).
    Ask,
    /// Types the newest code.
    CheckRight,
    /// Types a code that is not theirs.
    CheckWrong,
}

/// Every session's arrival, drawn hour by hour.
pub struct Traffic {
    params: Params,
    countries: Vec<CountryModel>,
    /// Per API key, its cumulative share, for drawing.
    api_keys: Vec<(String, f64)>,
    total_share: f64,
    rng: ChaCha8Rng,
}

struct CountryModel {
    country: Country,
    ranges: Vec<NumberPattern>,
    shared_ips: Vec<String>,
}

impl Traffic {
    pub fn new(params: &Params, rng: ChaCha8Rng) -> anyhow::Result<Self> {
        let mut rng = rng;
        let countries = params
            .countries
            .iter()
            .map(|country| {
                let ranges = country
                    .ranges
                    .iter()
                    .map(|range| NumberPattern::parse(range))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let shared_ips = (0..params.legitimate.shared_ips_per_country)
                    .map(|_| user_address(&mut rng))
                    .collect();
                Ok(CountryModel {
                    country: country.clone(),
                    ranges,
                    shared_ips,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut cumulative = 0.0;
        let api_keys = params
            .legitimate
            .api_keys
            .iter()
            .map(|key| {
                cumulative += key.share;
                (key.name.clone(), cumulative)
            })
            .collect();
        Ok(Self {
            total_share: params.countries.iter().map(|country| country.share).sum(),
            params: params.clone(),
            countries,
            api_keys,
            rng,
        })
    }

    /// Every attack's requests within the run, each a session of one request (bots never
    /// check), in no particular order.
    pub fn attacks(&mut self) -> anyhow::Result<Vec<(DateTime<Utc>, Session)>> {
        let mut sessions = Vec::new();
        let attacks = self.params.attacks.clone();

        let sequential = &attacks.sequential;
        let first: u64 = sequential.first[1..].parse()?;
        let pool = AddressPool::parse(&sequential.ip)?;
        for (index, at) in self.evenly(&sequential.when, sequential.codes)? {
            let number = first + u64::from(index % sequential.numbers);
            let client_ip = pool.draw(&mut self.rng);
            sessions.push((
                at,
                bot(
                    Attack::Sequential,
                    &sequential.when,
                    format!("+{number}"),
                    client_ip,
                ),
            ));
        }

        let drip = &attacks.premium_drip;
        let range = NumberPattern::parse(&drip.range)?;
        let pool = AddressPool::parse(&drip.ip)?;
        let codes = drip.per_hour * drip.when.minutes / 60;
        for at in self.at_random(&drip.when, codes)? {
            let to = range.draw(&mut self.rng);
            let client_ip = pool.draw(&mut self.rng);
            sessions.push((at, bot(Attack::PremiumDrip, &drip.when, to, client_ip)));
        }

        let prefixes = &attacks.prefixes;
        let first: u64 = prefixes.first[1..].parse()?;
        let pool = AddressPool::parse(&prefixes.ip)?;
        let codes = prefixes.prefixes * prefixes.codes_per_prefix;
        let times = self.at_random(&prefixes.when, codes)?;
        for (index, at) in times.into_iter().enumerate() {
            let prefix = u64::try_from(index)? % u64::from(prefixes.prefixes);
            let number = first
                + prefix * u64::from(prefixes.stride) * 1000
                + self.rng.random_range(0..1000u64);
            let client_ip = pool.draw(&mut self.rng);
            sessions.push((
                at,
                bot(
                    Attack::Prefixes,
                    &prefixes.when,
                    format!("+{number}"),
                    client_ip,
                ),
            ));
        }

        for (attack, from) in [
            (Attack::OneIp, &attacks.one_ip),
            (Attack::OneRange, &attacks.one_range),
        ] {
            let pool = AddressPool::parse(&from.ip)?;
            for (index, at) in self.evenly(&from.when, from.codes)? {
                let iso = &from.countries[index as usize % from.countries.len()];
                let country = self
                    .countries
                    .iter()
                    .find(|model| &model.country.iso == iso)
                    .ok_or_else(|| anyhow::anyhow!("no country {iso}"))?;
                let range = &country.ranges[self.rng.random_range(0..country.ranges.len())];
                let to = range.draw(&mut self.rng);
                let client_ip = pool.draw(&mut self.rng);
                sessions.push((at, bot(attack, &from.when, to, client_ip)));
            }
        }
        let end = self.params.end();
        sessions.retain(|(at, _)| *at < end);
        Ok(sessions)
    }

    /// `codes` requests at a bot's regular pace over the attack, with a little jitter, and
    /// their index.
    fn evenly(&mut self, when: &When, codes: u32) -> anyhow::Result<Vec<(u32, DateTime<Utc>)>> {
        let start = self.params.time_of(when.day, &when.at)?;
        let spacing = f64::from(when.minutes) * 60.0 / f64::from(codes.max(1));
        Ok((0..codes)
            .map(|index| {
                let jitter = self.rng.random_range(0.0..spacing * 0.5);
                let offset = f64::from(index) * spacing + jitter;
                (index, start + millis(offset))
            })
            .collect())
    }

    /// `codes` requests at random moments of the attack, in order.
    fn at_random(&mut self, when: &When, codes: u32) -> anyhow::Result<Vec<DateTime<Utc>>> {
        let start = self.params.time_of(when.day, &when.at)?;
        let seconds = f64::from(when.minutes) * 60.0;
        let mut times: Vec<DateTime<Utc>> = (0..codes)
            .map(|_| start + millis(self.rng.random_range(0.0..seconds)))
            .collect();
        times.sort();
        Ok(times)
    }

    /// The legitimate users arriving in the hour from `hour`, the surge's included.
    pub fn users(&mut self, hour: DateTime<Utc>) -> anyhow::Result<Vec<(DateTime<Utc>, Session)>> {
        let mut arrivals = Vec::new();
        let surge = self.params.surge.clone();
        let surge_start = self.params.time_of(surge.day, &surge.at)?;
        let surge_end = surge_start + TimeDelta::hours(i64::from(surge.hours));
        for index in 0..self.countries.len() {
            let country = &self.countries[index].country;
            let per_hour = self.params.legitimate.users_per_day / 24.0 * country.share
                / self.total_share
                * self.daily_cycle(hour, country.utc_offset);
            let surging = country.iso == surge.country && hour >= surge_start && hour < surge_end;
            for (stream, rate) in [
                (Stream::Legitimate, per_hour),
                (
                    Stream::Surge,
                    if surging {
                        per_hour * (surge.multiple - 1.0)
                    } else {
                        0.0
                    },
                ),
            ] {
                for at in self.poisson(hour, rate) {
                    let session = self.user(index, stream);
                    arrivals.push((at, session));
                }
            }
        }
        Ok(arrivals)
    }

    /// A Poisson process of `per_hour` arrivals an hour over the hour from `hour`.
    fn poisson(&mut self, hour: DateTime<Utc>, per_hour: f64) -> Vec<DateTime<Utc>> {
        let mut times = Vec::new();
        if per_hour <= 0.0 {
            return times;
        }
        let mut offset = 0.0;
        loop {
            let uniform: f64 = self.rng.random_range(f64::EPSILON..1.0);
            offset += -uniform.ln() / per_hour * 3600.0;
            if offset >= 3600.0 {
                return times;
            }
            times.push(hour + millis(offset));
        }
    }

    /// The rate at `hour` in a country `utc_offset` hours from UTC, as a multiple of its mean
    /// over a day: a cosine from the night's low to the peak hour's high.
    fn daily_cycle(&self, hour: DateTime<Utc>, utc_offset: f64) -> f64 {
        let legitimate = &self.params.legitimate;
        let local = f64::from(hour.hour()) + 0.5 + utc_offset;
        let phase = (local - legitimate.peak_hour) / 24.0 * std::f64::consts::TAU;
        let night = legitimate.night_share;
        let rate = night + (1.0 - night) * (1.0 + phase.cos()) / 2.0;
        rate / (night + (1.0 - night) / 2.0)
    }

    fn user(&mut self, country: usize, stream: Stream) -> Session {
        let behaviour = self.params.behaviour.clone();
        let model = &self.countries[country];
        let range = &model.ranges[self.rng.random_range(0..model.ranges.len())];
        let to = range.draw(&mut self.rng);
        let client_ip = if !model.shared_ips.is_empty()
            && self.rng.random_bool(self.params.legitimate.shared_ip_share)
        {
            model.shared_ips[self.rng.random_range(0..model.shared_ips.len())].clone()
        } else {
            user_address(&mut self.rng)
        };
        let converts = self.rng.random_bool(model.country.conversion);
        let api_key = self.api_key();

        let mut steps = Vec::new();
        let mut clock = TimeDelta::zero();
        let mut after = |rng: &mut ChaCha8Rng, [low, high]: [u32; 2]| {
            clock += TimeDelta::seconds(i64::from(rng.random_range(low..=high.max(low))));
            clock
        };
        if converts {
            if self.rng.random_bool(behaviour.retry_share) {
                steps.push((
                    after(&mut self.rng, behaviour.retry_after_seconds),
                    Step::Ask,
                ));
            }
            let check_at = after(&mut self.rng, behaviour.check_delay_seconds);
            if self.rng.random_bool(behaviour.mistype_share) {
                steps.push((check_at, Step::CheckWrong));
                steps.push((
                    after(&mut self.rng, behaviour.mistype_fix_seconds),
                    Step::CheckRight,
                ));
            } else {
                steps.push((check_at, Step::CheckRight));
            }
        } else {
            if self.rng.random_bool(behaviour.lost_retry_share) {
                steps.push((
                    after(&mut self.rng, behaviour.retry_after_seconds),
                    Step::Ask,
                ));
            }
            if self.rng.random_bool(behaviour.lost_wrong_share) {
                for _ in 0..self.rng.random_range(1..=2) {
                    steps.push((
                        after(&mut self.rng, behaviour.check_delay_seconds),
                        Step::CheckWrong,
                    ));
                }
            }
        }
        Session {
            stream,
            api_key,
            to,
            client_ip,
            steps,
        }
    }

    fn api_key(&mut self) -> String {
        let total = self
            .api_keys
            .last()
            .map_or(1.0, |(_, cumulative)| *cumulative);
        let draw = self.rng.random_range(0.0..total);
        self.api_keys
            .iter()
            .find(|(_, cumulative)| draw < *cumulative)
            .or(self.api_keys.last())
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }
}

fn bot(attack: Attack, when: &When, to: String, client_ip: String) -> Session {
    Session {
        stream: Stream::Attack(attack),
        api_key: when.api_key.clone(),
        to,
        client_ip,
        steps: Vec::new(),
    }
}

/// A user's address: anywhere in public unicast IPv4, never in the documentation ranges the
/// attacks are given (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
pub fn user_address(rng: &mut impl Rng) -> String {
    loop {
        let a: u8 = rng.random_range(1..=223);
        let [b, c, d]: [u8; 3] = rng.random();
        let private = matches!((a, b), (10, _) | (127, _) | (169, 254) | (192, 168))
            || (a == 172 && (16..32).contains(&b));
        let documentation = matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113));
        if !private && !documentation && d != 0 {
            return format!("{a}.{b}.{c}.{d}");
        }
    }
}

fn millis(seconds: f64) -> TimeDelta {
    // Simulated offsets stay within a week: far inside i64 milliseconds.
    #[allow(clippy::cast_possible_truncation)]
    TimeDelta::milliseconds((seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn params() -> Params {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("params.toml");
        Params::read(&path).unwrap()
    }

    #[test]
    fn the_same_seed_draws_the_same_traffic() {
        let params = params();
        let draw = |seed| {
            let mut traffic = Traffic::new(&params, ChaCha8Rng::seed_from_u64(seed)).unwrap();
            let users = traffic.users(params.start + TimeDelta::hours(13)).unwrap();
            users
                .iter()
                .map(|(at, session)| format!("{at} {} {}", session.to, session.client_ip))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn a_day_brings_about_the_users_per_day_with_a_quiet_night() {
        let params = params();
        let mut traffic = Traffic::new(&params, ChaCha8Rng::seed_from_u64(1)).unwrap();
        let per_hour: Vec<usize> = (0..24)
            .map(|hour| {
                traffic
                    .users(params.start + TimeDelta::hours(hour))
                    .unwrap()
                    .iter()
                    .filter(|(_, session)| session.stream == Stream::Legitimate)
                    .count()
            })
            .collect();
        let day: usize = per_hour.iter().sum();
        let expected = params.legitimate.users_per_day;
        assert!(
            (day as f64 - expected).abs() < expected * 0.05,
            "{day} users in a day, {expected} expected"
        );
        let (quietest, busiest) = (
            per_hour.iter().min().unwrap(),
            per_hour.iter().max().unwrap(),
        );
        assert!(*busiest > quietest * 2, "{per_hour:?}");
    }

    #[test]
    fn the_attacks_have_their_shapes() {
        let params = params();
        let mut traffic = Traffic::new(&params, ChaCha8Rng::seed_from_u64(1)).unwrap();
        let attacks = traffic.attacks().unwrap();
        let of = |attack| {
            attacks
                .iter()
                .filter(move |(_, session)| session.stream == Stream::Attack(attack))
        };
        let sequential: Vec<_> = of(Attack::Sequential).collect();
        assert_eq!(sequential.len(), params.attacks.sequential.codes as usize);
        let numbers: std::collections::BTreeSet<&str> = sequential
            .iter()
            .map(|(_, session)| session.to.as_str())
            .collect();
        assert_eq!(numbers.len(), params.attacks.sequential.numbers as usize);
        let first = sequential.iter().map(|(at, _)| *at).min().unwrap();
        let last = sequential.iter().map(|(at, _)| *at).max().unwrap();
        assert!(
            last - first <= TimeDelta::minutes(i64::from(params.attacks.sequential.when.minutes))
        );

        let prefixes: std::collections::BTreeSet<String> = of(Attack::Prefixes)
            .map(|(_, session)| session.to[..session.to.len() - 3].to_owned())
            .collect();
        assert_eq!(prefixes.len(), params.attacks.prefixes.prefixes as usize);

        let one_ip: std::collections::BTreeSet<&str> = of(Attack::OneIp)
            .map(|(_, session)| session.client_ip.as_str())
            .collect();
        assert_eq!(one_ip.len(), 1);
        assert!(
            of(Attack::OneRange).all(|(_, session)| session.client_ip.starts_with("203.0.113."))
        );
        assert!(
            attacks.iter().all(|(_, session)| session.steps.is_empty()),
            "bots never check"
        );
    }
}
