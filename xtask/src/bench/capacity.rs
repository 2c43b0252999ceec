//! The capacity scenario: whether CPU per request adds up when instances share one database,
//! as the capacity model (`docs/capacity.md`) assumes. A fixed workload of four kinds
//! (verifications started, checks, messages, each code and message sent to the fake Twilio;
//! signed status callbacks for sends made beforehand) runs kind after kind on one instance,
//! which gives each kind's CPU per request, the status callback's included (no other figure
//! measures it); then the same workload runs on a fresh database split between two instances,
//! every kind at once. The model's prediction (each kind's requests times its CPU per request)
//! is reported beside what the two instances and PostgreSQL used, with their ratio.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;

use super::cpu::{CpuUse, Meter};
use super::fake_twilio::{self, FakeTwilio};
use super::history::psql_value;
use super::load::{self, Call, MakeCall};
use super::report::Goal;
use super::service::{FreshStore, Service, StoreKind};
use super::{message_call, verification_call, Bench, TWILIO_LATENCY};

/// What the service tells Twilio to call back, and what Twilio therefore signs; the bench
/// posts to the service's own address.
const PUBLIC_BASE_URL: &str = "https://notify.bench.example";
const CALLBACK_PATH: &str = "/v1/webhooks/twilio/status";
/// Connections per kind of request, every instance's together: the same total whether one
/// instance takes them or two share them, so that group commit sees similar batches.
const CONNECTIONS_PER_KIND: usize = 16;
const INSTANCES: usize = 2;
/// Numbers of the measured verifications and messages, apart from the setup's.
const MEASURED_NUMBERS: u64 = 1_000_000;
const PATIENCE: Duration = Duration::from_secs(300);
/// After Twilio has the last send, for its answer (`TWILIO_LATENCY`) to be recorded within
/// the measurement: the rest of a send's cost.
const SETTLE: Duration = Duration::from_millis(300);

/// The fixed workload: requests of each kind, and the pending verifications the checks go to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Workload {
    pub per_kind: u64,
    pub pending: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Verification,
    Check,
    Message,
    Callback,
}

const KINDS: [Kind; 4] = [
    Kind::Verification,
    Kind::Check,
    Kind::Message,
    Kind::Callback,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Verification => "verification started (its code sent)",
            Kind::Check => "check",
            Kind::Message => "message (accepted and sent)",
            Kind::Callback => "status callback (delivered)",
        }
    }

    /// Whether each request ends in a send to Twilio, which the kind's CPU must include.
    fn sends(self) -> bool {
        matches!(self, Kind::Verification | Kind::Message)
    }
}

/// What every request of the workload needs made beforehand.
struct Requests {
    /// Pending verifications, which the checks go to in turn.
    pending: Arc<[String]>,
    /// Signed callbacks (form, signature), one per send of the setup.
    callbacks: Arc<[(String, String)]>,
}

impl Requests {
    /// The `n`th request of `kind` (from 0).
    fn make(&self, kind: Kind, first: u64) -> MakeCall {
        match kind {
            Kind::Verification => {
                Arc::new(move |n| verification_call(MEASURED_NUMBERS + first + n))
            }
            Kind::Message => Arc::new(move |n| message_call(MEASURED_NUMBERS + first + n)),
            Kind::Check => {
                let pending = self.pending.clone();
                Arc::new(move |n| Call {
                    path: format!(
                        "/v1/verifications/{}/check",
                        pending[((first + n) % pending.len() as u64) as usize]
                    ),
                    // Wrong (but for one chance in a million), as the checks' scenario sends.
                    body: json!({"code": "000000"}).to_string(),
                    twilio_signature: None,
                })
            }
            Kind::Callback => {
                let callbacks = self.callbacks.clone();
                Arc::new(move |n| {
                    let (form, signature) = &callbacks[(first + n) as usize % callbacks.len()];
                    Call {
                        path: CALLBACK_PATH.into(),
                        body: form.clone(),
                        twilio_signature: Some(signature.clone()),
                    }
                })
            }
        }
    }
}

/// Twilio's report that its `n`th send was delivered, as a form and its `X-Twilio-Signature`.
fn signed_callback(n: u64) -> anyhow::Result<(String, String)> {
    let sid = fake_twilio::sid(n);
    let params = [
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", fake_twilio::FROM),
        ("MessageSid", &sid),
        ("MessageStatus", "delivered"),
        ("SmsSid", &sid),
        ("SmsStatus", "delivered"),
        ("To", "+15550000000"),
    ];
    let url = format!("{PUBLIC_BASE_URL}{CALLBACK_PATH}");
    let signature = twilio_signature(fake_twilio::AUTH_TOKEN, &url, &params)?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Ok((form, signature))
}

/// Twilio's signature of a callback to `url`, as its helper libraries compute it: base64 of
/// HMAC-SHA1 under the auth token over the URL and every parameter, sorted by name.
fn twilio_signature(
    auth_token: &str,
    url: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .context("HMAC refused the auth token")?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

impl Bench {
    /// The capacity scenario: the workload on one instance, kind by kind, then on two at once.
    pub(super) async fn capacity(&mut self) -> anyhow::Result<()> {
        let store = StoreKind::Postgres;
        let workload = self.plan.capacity;

        eprintln!("==> bench: capacity, one instance ({})", store.name());
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let fresh = FreshStore::create(store, "capacity_one", &self.bench_dir)?;
        let one = self
            .start_on(&fresh, "capacity_one", &twilio, &overrides())
            .await?;
        let requests = prepare(&one, &twilio, &fresh, workload).await?;
        let mut per_kind = Vec::new();
        for kind in KINDS {
            // Read outside the meter: psql's own session is not the kind's cost.
            let wal = wal_position(&fresh)?;
            let meter = meter(&[one.pid()?], &fresh)?;
            run(&[&one], &twilio, &requests, &[kind], workload).await?;
            let cpu = meter.stop()?;
            per_kind.push((kind, cpu, wal_since(&fresh, &wal)?));
        }
        ensure_delivered(&fresh, workload)?;
        one.stop().await?;
        drop(fresh);

        eprintln!(
            "==> bench: capacity, {INSTANCES} instances ({})",
            store.name()
        );
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let fresh = FreshStore::create(store, "capacity_two", &self.bench_dir)?;
        let mut instances = Vec::new();
        for index in 0..INSTANCES {
            let scenario = format!("capacity_two_{index}");
            instances.push(
                self.start_on(&fresh, &scenario, &twilio, &overrides())
                    .await?,
            );
        }
        let requests = prepare(&instances[0], &twilio, &fresh, workload).await?;
        let pids = instances
            .iter()
            .map(Service::pid)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let meter = meter(&pids, &fresh)?;
        let services: Vec<&Service> = instances.iter().collect();
        run(&services, &twilio, &requests, &KINDS, workload).await?;
        let measured = meter.stop()?;
        ensure_delivered(&fresh, workload)?;
        for instance in instances {
            instance.stop().await?;
        }

        self.capacity_figures(store, workload, &per_kind, &measured);
        Ok(())
    }

    fn capacity_figures(
        &mut self,
        store: StoreKind,
        workload: Workload,
        per_kind: &[(Kind, CpuUse, f64)],
        measured: &CpuUse,
    ) {
        let method = format!("one instance on a fresh database, {} requests of each kind in turn over {CONNECTIONS_PER_KIND} connections, PUBLIC_BASE_URL set (sends ask for status callbacks); user and system CPU time (from /proc) from a kind's first request until its last was answered and, for sends, until the fake Twilio ({} ms) had the last and {} ms more for its answer to be recorded, divided by the requests", workload.per_kind, TWILIO_LATENCY.as_millis(), SETTLE.as_millis());
        let (mut service_total, mut postgres_total) = (0.0, Some(0.0));
        for (kind, cpu, wal) in per_kind {
            let (service, postgres) = cpu.seconds();
            service_total += service;
            postgres_total = postgres_total.zip(postgres).map(|(sum, more)| sum + more);
            let per_request = |seconds: f64| seconds * 1e6 / workload.per_kind as f64;
            self.figure(
                13,
                &format!("one instance: service CPU per {}", kind.name()),
                store,
                (per_request(service), "µs"),
                Goal::None,
                method.clone(),
            );
            if let Some(postgres) = postgres {
                self.figure(
                    13,
                    &format!("one instance: PostgreSQL CPU per {}", kind.name()),
                    store,
                    (per_request(postgres), "µs"),
                    Goal::None,
                    format!("{method}; PostgreSQL's own processes (checkpointer, WAL writer, ...) and the sessions on the scenario's database, not other databases' sessions"),
                );
            }
            self.figure(
                13,
                &format!("one instance: WAL per {}", kind.name()),
                store,
                (wal / workload.per_kind as f64, "B"),
                Goal::None,
                "pg_current_wal_lsn() before and after the kind's requests, divided by them: the whole cluster's WAL, so anything else writing meanwhile counts too".to_owned(),
            );
        }
        let split = format!("the same workload ({} of each kind, {} pending verifications checked) on a fresh database, split evenly between {INSTANCES} instances, every kind at once, {CONNECTIONS_PER_KIND} connections per kind in all; from the first request until the last was answered and Twilio had every send, and {} ms more", workload.per_kind, workload.pending, SETTLE.as_millis());
        let (service, postgres) = measured.seconds();
        let pairs = [
            (
                "service CPU, both instances",
                Some(service),
                Some(service_total),
            ),
            ("PostgreSQL CPU", postgres, postgres_total),
        ];
        for (what, measured, predicted) in pairs {
            let (Some(measured), Some(predicted)) = (measured, predicted) else {
                continue;
            };
            self.figure(
                13,
                &format!("{INSTANCES} instances: {what}, predicted"),
                store,
                (predicted * 1e3, "ms"),
                Goal::None,
                "the sum over the kinds of the one-instance CPU per request times the requests: the model's prediction".to_owned(),
            );
            self.figure(
                13,
                &format!("{INSTANCES} instances: {what}, measured"),
                store,
                (measured * 1e3, "ms"),
                Goal::None,
                split.clone(),
            );
            self.figure(
                13,
                &format!("{INSTANCES} instances: {what}, measured as a share of predicted"),
                store,
                (100.0 * measured / predicted.max(f64::MIN_POSITIVE), "%"),
                Goal::Within {
                    target: 100.0,
                    tolerance: 0.1,
                },
                "the two figures above divided: the model holds when CPU per request adds up across instances".to_owned(),
            );
        }
        self.figure(
            13,
            &format!("machine idle, {INSTANCES} instances"),
            store,
            (measured.idle_percent(), "%"),
            Goal::None,
            "idle and iowait share of both cores over the two-instance run (/proc/stat)".to_owned(),
        );
    }
}

/// Status callbacks need `PUBLIC_BASE_URL`; checks must leave their verifications pending.
fn overrides() -> [(&'static str, String); 2] {
    [
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_owned()),
        ("VERIFY_MAX_CHECKS", "1000000000".to_owned()),
    ]
}

/// Makes what the workload needs on `service`'s database, unmeasured: the pending verifications
/// the checks go to, and one sent message per status callback, waiting until each send has its
/// Twilio sid recorded (a callback for an unknown sid costs less than one that applies).
async fn prepare(
    service: &Service,
    twilio: &FakeTwilio,
    fresh: &FreshStore,
    workload: Workload,
) -> anyhow::Result<Requests> {
    let mut connection = load::Connection::new(&service.target);
    let pending = super::start_verifications(&mut connection, workload.pending).await?;
    let sent = load::fill(
        &service.target,
        CONNECTIONS_PER_KIND,
        workload.per_kind,
        Arc::new(message_call),
    )
    .await;
    if sent.succeeded < workload.per_kind {
        bail!(
            "queued only {} of {} messages: {}",
            sent.succeeded,
            workload.per_kind,
            sent.first_failure.as_deref().unwrap_or("no failure")
        );
    }
    let sends = workload.pending + workload.per_kind;
    wait_for_sends(twilio, sends).await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let recorded: u64 = psql_value(
            &fresh.database_url,
            "SELECT count(*) FROM messages WHERE provider_sid IS NOT NULL",
        )?
        .parse()
        .context("a count that is not a number")?;
        if recorded >= sends {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("only {recorded} of {sends} sends had their sid recorded within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let callbacks = (0..workload.per_kind)
        .map(signed_callback)
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Requests {
        pending: pending.into(),
        callbacks: callbacks.into(),
    })
}

/// Every request of `kinds` in the workload, split evenly between `services`, all at once; then
/// waits until Twilio has every send they made, and their outcomes are recorded.
async fn run(
    services: &[&Service],
    twilio: &FakeTwilio,
    requests: &Requests,
    kinds: &[Kind],
    workload: Workload,
) -> anyhow::Result<()> {
    let expected = twilio
        .accepted_counter()
        .load(std::sync::atomic::Ordering::Relaxed)
        + kinds.iter().filter(|kind| kind.sends()).count() as u64 * workload.per_kind;
    let shares = services.len() as u64;
    let connections = (CONNECTIONS_PER_KIND / services.len()).max(1);
    let mut fills = Vec::new();
    for &kind in kinds {
        for (index, service) in services.iter().enumerate() {
            let index = index as u64;
            let first = workload.per_kind * index / shares;
            let count = workload.per_kind * (index + 1) / shares - first;
            let (target, make) = (service.target.clone(), requests.make(kind, first));
            fills.push((
                kind,
                count,
                tokio::spawn(async move { load::fill(&target, connections, count, make).await }),
            ));
        }
    }
    for (kind, count, fill) in fills {
        let outcome = fill.await.context("a load task panicked")?;
        if outcome.succeeded < count {
            bail!(
                "{}: only {} of {count} requests succeeded: {}",
                kind.name(),
                outcome.succeeded,
                outcome.first_failure.as_deref().unwrap_or("no failure")
            );
        }
    }
    if kinds.iter().any(|kind| kind.sends()) {
        wait_for_sends(twilio, expected).await?;
        tokio::time::sleep(SETTLE).await;
    }
    Ok(())
}

async fn wait_for_sends(twilio: &FakeTwilio, expected: u64) -> anyhow::Result<()> {
    let sent = twilio.accepted_counter();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sent.load(std::sync::atomic::Ordering::Relaxed) < expected {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "only {} of {expected} sends reached Twilio within {PATIENCE:?}",
                sent.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Counts the service processes `pids` and PostgreSQL's work for `fresh` only: other databases
/// on a shared server would swamp it.
fn meter(pids: &[u32], fresh: &FreshStore) -> anyhow::Result<Meter> {
    match fresh.database_name() {
        Some(database) => Meter::start_on(pids, &database),
        None => Meter::start_all(pids),
    }
}

/// Where the cluster's write-ahead log ends now.
fn wal_position(fresh: &FreshStore) -> anyhow::Result<String> {
    psql_value(&fresh.database_url, "SELECT pg_current_wal_lsn()")
}

/// Bytes of write-ahead log written since `from` (a [`wal_position`]).
fn wal_since(fresh: &FreshStore, from: &str) -> anyhow::Result<f64> {
    psql_value(
        &fresh.database_url,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{from}')"),
    )?
    .parse()
    .context("a WAL distance that is not a number")
}

/// Every status callback applied: a callback the service could not match to a message is
/// answered 200 all the same, and would pass for a cheap one.
fn ensure_delivered(fresh: &FreshStore, workload: Workload) -> anyhow::Result<()> {
    let delivered: u64 = psql_value(
        &fresh.database_url,
        "SELECT count(*) FROM messages WHERE status = 'delivered'",
    )?
    .parse()
    .context("a count that is not a number")?;
    if delivered != workload.per_kind {
        bail!(
            "{delivered} messages delivered after {} status callbacks",
            workload.per_kind
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's own example (its webhook security page): a wrong signature would have every
    /// callback refused 403 and the figure fail.
    #[test]
    fn callbacks_are_signed_as_twilio_signs_them() {
        let params = [
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
            ("CallSid", "CA1234567890ABCDE"),
        ];
        let signature = twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
        )
        .unwrap();
        assert_eq!(signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }

    #[test]
    fn a_callback_s_form_names_the_send_it_reports() {
        let (form, _) = signed_callback(7).unwrap();
        let params: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        assert!(params.contains(&("MessageSid".into(), fake_twilio::sid(7))));
        assert!(params.contains(&("MessageStatus".into(), "delivered".into())));
    }
}
