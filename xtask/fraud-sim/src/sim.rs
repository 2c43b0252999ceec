//! The run: the real use cases ([`app::Services`], the guard included) on a real store
//! (SQLite in memory, opened as the service opens its database), driven by the traffic model
//! one request at a time in simulated time, as a client service would call them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{anyhow, Context as _};
use app::usecases::codes::CodeHasher;
use app::usecases::fraud::ClientSignals;
use app::usecases::verify::{StartError, StartRequest};
use app::{Config, Services};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{Channel, CodeLength, PhoneNumber, VerificationCode, VerificationId};
use ports::{Clock, CodeGenerator};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use secrecy::SecretString;

use crate::params::Params;
use crate::tally::Tally;
use crate::traffic::{Session, Step, Traffic};

/// The time the use cases see: the simulation's, moved to each request's moment.
pub struct SimulatedClock(Mutex<DateTime<Utc>>);

impl SimulatedClock {
    fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Codes from a seeded generator, the last one kept so that the simulated user can type it
/// (requests are made one at a time, so the last code drawn is the one just sent).
struct SimulatedCodes {
    rng: Mutex<ChaCha8Rng>,
    last: Mutex<Option<String>>,
}

impl SimulatedCodes {
    fn take_last(&self) -> Option<String> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl CodeGenerator for SimulatedCodes {
    fn generate(&self, length: CodeLength) -> VerificationCode {
        let digits = usize::from(length.digits());
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let text: String = (0..digits)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(text.clone());
        VerificationCode::parse(&text).unwrap_or_else(|_| unreachable!("{digits} digits"))
    }
}

/// A session under way: its verification and newest code once a request was accepted.
struct Running {
    arrived: DateTime<Utc>,
    session: Session,
    verification: Option<VerificationId>,
    code: Option<String>,
}

/// One request due: at a time, the session's step (0: its first request).
type Due = Reverse<(DateTime<Utc>, u64, usize, usize)>;

/// How long after the last day the users still under way may finish (type their codes).
const SETTLING: TimeDelta = TimeDelta::minutes(15);

pub async fn run(params: &Params, quiet: bool) -> anyhow::Result<Tally> {
    let clock = Arc::new(SimulatedClock(Mutex::new(params.start)));
    let codes = Arc::new(SimulatedCodes {
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(params.seed ^ 0x636f_6465)),
        last: Mutex::new(None),
    });
    let services = services(params, clock.clone(), codes.clone()).await?;
    let mut traffic = Traffic::new(params, ChaCha8Rng::seed_from_u64(params.seed))?;
    let mut tally = Tally::new(params);

    let mut sessions: Vec<Running> = Vec::new();
    let mut due: BinaryHeap<Due> = BinaryHeap::new();
    let mut order = 0u64;
    let mut schedule = |due: &mut BinaryHeap<Due>, at, session, step| {
        order += 1;
        due.push(Reverse((at, order, session, step)));
    };
    for (at, session) in traffic.attacks()? {
        sessions.push(Running {
            arrived: at,
            session,
            verification: None,
            code: None,
        });
        schedule(&mut due, at, sessions.len() - 1, 0);
    }

    let started = Instant::now();
    let hours = i64::from(params.days) * 24;
    for hour_index in 0..=hours {
        if hour_index > 0 && hour_index % 24 == 0 && hour_index < hours && !quiet {
            tally.print_day(
                u32::try_from(hour_index / 24)?,
                params.days,
                started.elapsed(),
            );
        }
        let hour = params.start + TimeDelta::hours(hour_index);
        let until = if hour_index == hours {
            hour + SETTLING
        } else {
            for (at, session) in traffic.users(hour)? {
                sessions.push(Running {
                    arrived: at,
                    session,
                    verification: None,
                    code: None,
                });
                schedule(&mut due, at, sessions.len() - 1, 0);
            }
            hour + TimeDelta::hours(1)
        };
        while let Some(Reverse((at, _, index, step))) = due.peek().copied() {
            if at >= until {
                break;
            }
            due.pop();
            clock.set(at);
            let running = &mut sessions[index];
            let what = if step == 0 {
                Step::Ask
            } else {
                running.session.steps[step - 1].1
            };
            let accepted = match what {
                Step::Ask => ask(&services, running, &codes, &mut tally, at).await?,
                Step::CheckRight | Step::CheckWrong => {
                    check(&services, running, what, &mut tally, at).await?;
                    true
                }
            };
            // A user refused a first code goes away; one refused another still has the code
            // that went, and follows their plan.
            let goes_on = accepted || step > 0;
            if goes_on {
                if let Some((offset, _)) = running.session.steps.get(step) {
                    schedule(&mut due, running.arrived + *offset, index, step + 1);
                }
            }
            // A finished session holds nothing more.
            if step == running.session.steps.len() || !goes_on {
                running.session.steps = Vec::new();
                running.code = None;
            }
        }
    }
    if !quiet {
        tally.print_day(params.days, params.days, started.elapsed());
    }
    Ok(tally)
}

/// A request for a code (the first, or again), as the client service would make it.
async fn ask(
    services: &Services,
    running: &mut Running,
    codes: &SimulatedCodes,
    tally: &mut Tally,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let session = &running.session;
    let to = PhoneNumber::parse(&session.to).map_err(|error| anyhow!("{}: {error}", session.to))?;
    let request = StartRequest {
        to,
        channel: Channel::Sms,
        locale: None,
        code_length: None,
        app_hash: None,
        // Attack (d) is seen only through the client's address.
        client: ClientSignals {
            client_ip: session.client_ip.parse().ok(),
            ..ClientSignals::default()
        },
        brand: None,
        workflow: None,
        transaction: None,
    };
    let first = running.verification.is_none();
    match services.start_verification(&session.api_key, request).await {
        Ok(started) => {
            running.verification = Some(started.verification.id);
            running.code = codes.take_last();
            tally.asked(session.stream, at, first, None);
            Ok(true)
        }
        Err(error) => {
            let reason = refusal_reason(&error);
            if reason.starts_with("Store") || reason.ends_with("/Store") {
                return Err(anyhow!(error)).context("the store failed");
            }
            tally.asked(session.stream, at, first, Some(reason));
            Ok(false)
        }
    }
}

/// The user types a code: their newest, or a wrong one.
async fn check(
    services: &Services,
    running: &Running,
    what: Step,
    tally: &mut Tally,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (Some(id), Some(code)) = (running.verification, running.code.as_deref()) else {
        return Ok(());
    };
    let typed = if what == Step::CheckRight {
        code.to_owned()
    } else {
        wrong(code)
    };
    let typed = VerificationCode::parse(&typed).map_err(|error| anyhow!("{error}"))?;
    let outcome = services
        .check_verification(&running.session.api_key, id, &typed)
        .await;
    let approved = matches!(&outcome, Ok(outcome) if outcome.valid);
    tally.checked(running.session.stream, at, approved);
    Ok(())
}

/// A code that is not `code`: its last digit changed.
fn wrong(code: &str) -> String {
    let mut digits: Vec<u8> = code.bytes().collect();
    if let Some(last) = digits.last_mut() {
        *last = b'0' + (*last - b'0' + 1) % 10;
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// What refused a request, named after the error's variants (`Refused/RateLimited`) and the
/// reasons it carries, if any (`Fraud/Blocked[PrefixLowConversion]`, from each `code: Name`
/// in it), read from its `Debug` text so that variants and reasons added to the use cases
/// later are named without a change here.
pub fn refusal_reason(error: &StartError) -> String {
    let debug = format!("{error:?}");
    let words: Vec<&str> = debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|word| !word.is_empty())
        .collect();
    let mut name = words.first().copied().unwrap_or("Unknown").to_owned();
    if let Some(inner) = words
        .get(1)
        .filter(|inner| inner.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        name = format!("{name}/{inner}");
    }
    let mut reasons: Vec<&str> = words
        .windows(2)
        .filter(|pair| pair[0] == "code" && pair[1].starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|pair| pair[1])
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    if !reasons.is_empty() {
        name = format!("{name}[{}]", reasons.join("+"));
    }
    name
}

/// The use cases as the service assembles them from its settings (`params.service`), on a
/// fresh SQLite database in memory unless the settings name a `DATABASE_URL` (which must be
/// empty: the guard would read another run's counts), with the simulated clock and codes.
async fn services(
    params: &Params,
    clock: Arc<SimulatedClock>,
    codes: Arc<SimulatedCodes>,
) -> anyhow::Result<Services> {
    // A name of its own per run, so that two runs in one process never share a database.
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let database_url = format!(
        "sqlite://file:fraud-sim-{}-{}?mode=memory&cache=shared",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut settings = params.service.clone();
    settings
        .entry("DATABASE_URL".to_owned())
        .or_insert(database_url);
    let config = Config::from_lookup(|name| settings.get(name).cloned())
        .map_err(|error| anyhow!("[service] {}: {}", error.variable, error.problem))?;
    let stores = app::wiring::store::chosen(&config.database)
        .open()
        .await
        .map_err(|error| anyhow!("cannot open the simulation's database: {error}"))?;
    let templates = template::Templates::built_in().context("the built-in templates")?;
    let services = Services::builder(
        stores.ports,
        Arc::new(templates),
        CodeHasher::new(SecretString::from("fraud-sim-pepper-".repeat(2))),
    )
    .clock(clock)
    .code_generator(codes)
    .verification_policy(config.verification)
    .guards(config.guards.clone())
    .fraud_guard(config.fraud.clone())
    .build();
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::usecases::guards::{LimitScope, Refusal};

    #[test]
    fn a_refusal_is_named_after_its_variants() {
        let too_soon = StartError::TooSoon {
            retry_after: TimeDelta::seconds(3),
        };
        assert_eq!(refusal_reason(&too_soon), "TooSoon");
        let limited = StartError::Refused(Refusal::RateLimited {
            scope: LimitScope::ApiKey,
            retry_after: TimeDelta::seconds(3),
        });
        assert_eq!(refusal_reason(&limited), "Refused/RateLimited");
        assert_eq!(refusal_reason(&StartError::TooManySends), "TooManySends");
        // The guard's refusal is named by its variant and its findings' codes.
        let blocked = StartError::Fraud(app::usecases::fraud::FraudRefusal::Blocked {
            decision: domain::fraud::Decision {
                action: domain::fraud::Action::Block,
                reasons: vec![domain::fraud::Reason::new(
                    domain::fraud::ReasonCode::PrefixSurge,
                    "12 codes in the last hour",
                )],
            },
            retry_after: Some(TimeDelta::hours(12)),
        });
        let named = refusal_reason(&blocked);
        assert!(
            named.starts_with("Fraud/Blocked") && named.contains("PrefixSurge"),
            "{named}"
        );
    }

    /// A day of a few users and small attacks, every attack within it.
    fn small_run() -> Params {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("params.toml");
        let mut params = Params::read(&path).unwrap().shortened().unwrap();
        params.days = 1;
        params.legitimate.users_per_day = 300.0;
        params.surge.day = 1;
        let attacks = &mut params.attacks;
        attacks.sequential.codes = 60;
        attacks.sequential.numbers = 30;
        attacks.premium_drip.when.minutes = 120;
        attacks.prefixes.prefixes = 3;
        attacks.prefixes.codes_per_prefix = 10;
        attacks.one_ip.codes = 25;
        attacks.one_range.codes = 25;
        for when in [
            &mut attacks.sequential.when,
            &mut attacks.premium_drip.when,
            &mut attacks.prefixes.when,
            &mut attacks.one_ip.when,
            &mut attacks.one_range.when,
        ] {
            when.day = 1;
        }
        params
    }

    #[tokio::test]
    async fn a_run_makes_every_request_and_is_the_same_from_the_same_seed() {
        let params = small_run();
        let first = run(&params, true).await.unwrap();
        let again = run(&params, true).await.unwrap();

        let codes = |tally: &Tally, stream| tally.streams.get(&stream).map(|counts| counts.codes);
        for (attack, expected) in [
            (crate::traffic::Attack::Sequential, 60),
            (crate::traffic::Attack::PremiumDrip, 40),
            (crate::traffic::Attack::Prefixes, 30),
            (crate::traffic::Attack::OneIp, 25),
            (crate::traffic::Attack::OneRange, 25),
        ] {
            assert_eq!(
                codes(&first, crate::traffic::Stream::Attack(attack)),
                Some(expected),
                "{attack:?}"
            );
        }
        let legitimate = first.legitimate();
        assert!(legitimate.users > 200, "{legitimate:?}");
        let conversion = legitimate.approved as f64 / legitimate.users as f64;
        assert!(
            (0.6..0.95).contains(&conversion),
            "{conversion}: {legitimate:?}"
        );
        assert_eq!(
            serde_json::to_string(&first.hours).unwrap(),
            serde_json::to_string(&again.hours).unwrap(),
            "the same seed, the same run"
        );
    }

    #[test]
    fn a_wrong_code_differs_from_the_right_one() {
        assert_eq!(wrong("123459"), "123450");
        assert_eq!(wrong("000000"), "000001");
    }
}
