//! `cargo xtask bench`: the service's figures as users load it, on this machine, against the
//! local PostgreSQL and the embedded SQLite store, with a fake Twilio that answers after a set
//! latency. Each scenario gets a fresh store and a fresh service process, runs for a bounded
//! time, and stops what it started; the figures go to `target/bench/report.md` and
//! `report.json`. No figure is asserted: a benchmark reports, the tests judge behaviour.

mod capacity;
mod cpu;
mod dashboard;
mod events;
mod fake_twilio;
mod history;
mod load;
mod report;
mod service;
mod soak;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::json;

use cpu::{CpuUse, Meter};
use fake_twilio::FakeTwilio;
use load::{Call, MakeCall, Outcome, Schedule, Target};
use report::{Figure, Goal, Report};
use service::{FreshStore, Service, StoreKind};

/// Twilio's answer time in every scenario but the filling of a backlog.
const TWILIO_LATENCY: Duration = Duration::from_millis(100);
/// Provider calls in flight: with `TWILIO_LATENCY`, the dispatch ceiling is this many calls
/// per latency.
const DISPATCH_CONCURRENCY: u32 = 200;
const SENDER_MPS: u32 = 50;
/// Keep-alive connections of the closed-loop runs: enough to keep both cores busy, as a fleet
/// of client instances would: each verification waits on three writes in a row, and with few
/// connections the batches of group commit stay small (`docs/performance.md`). The idle share
/// of each run is reported beside its figure.
const CONNECTIONS: usize = 128;
/// Verifications started are also reported at the earlier count, for comparison.
const FEW_CONNECTIONS: usize = 32;
/// Requests per second of the open-loop run that measures the API's latency.
const LATENCY_RATE: f64 = 1_000.0;
/// The guard's cost scenario: runs per fraud mode, and the modes it compares (off first).
const GUARD_RUNS: usize = 3;
const GUARD_MODES: [&str; 2] = ["off", "monitor"];
/// Verifications per second of the guard's open loop: well under what the service sustains,
/// so that the latency is the requests' own, not a queue's.
const GUARD_LATENCY_RATE: f64 = 300.0;
/// Between two codes of the time-to-provider scenario, so that each finds the dispatcher idle
/// (the last send over).
const CODE_SPACING: Duration = Duration::from_millis(150);
/// Codes sent and not counted before the idle time to provider, where the history comparison
/// measures an instance as it runs rather than as it starts (`Bench::after_start_jobs`).
const WARM_UP_CODES: usize = 5;
const CODE_PATIENCE: Duration = Duration::from_secs(10);
/// The end-to-end CPU scenario's message count instead of the full run's, for a profile of a
/// fixed workload.
const END_TO_END_VARIABLE: &str = "SMS_NOTIFY_BENCH_MESSAGES";
/// The end-to-end CPU scenario's connections when the service runs under a profiler.
const PROFILED_CONNECTIONS: usize = 8;
/// How long the end-to-end CPU scenario waits for its last message to reach Twilio.
const END_TO_END_PATIENCE: Duration = Duration::from_secs(300);

/// What `cargo xtask bench` was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub quick: bool,
    /// Only the scenarios that measure this figure (1-13).
    pub only: Option<u8>,
    /// Instead of the figures, the soak run (`soak`) for this many minutes.
    pub soak_minutes: Option<u32>,
}

/// How long and how much: the full run, or the quick one CI runs so that this never rots.
struct Plan {
    only: Option<u8>,
    /// The smoke run: a small history dataset too.
    quick: bool,
    release: bool,
    api: Schedule,
    dispatch: Schedule,
    idle_codes: usize,
    /// Messages of the end-to-end CPU scenario, accepted and sent.
    end_to_end: u64,
    /// The capacity scenario's workload, on one instance and then on two.
    capacity: capacity::Workload,
}

impl Plan {
    fn new(Options { quick, only, .. }: Options) -> Self {
        if quick {
            Self {
                only,
                quick,
                // The debug build the tests already have: no release build in CI.
                release: false,
                api: schedule(0.5, 1.5),
                dispatch: schedule(0.25, 1.0),
                idle_codes: 10,
                end_to_end: messages_override().unwrap_or(500),
                capacity: capacity::Workload {
                    per_kind: 300,
                    pending: 50,
                },
            }
        } else {
            Self {
                only,
                quick,
                release: true,
                api: schedule(2.0, 10.0),
                dispatch: schedule(2.0, 10.0),
                idle_codes: 100,
                end_to_end: messages_override().unwrap_or(6_000),
                capacity: capacity::Workload {
                    per_kind: 6_000,
                    pending: 200,
                },
            }
        }
    }
}

fn messages_override() -> Option<u64> {
    std::env::var(END_TO_END_VARIABLE)
        .ok()
        .and_then(|count| count.parse().ok())
}

fn schedule(warm_up: f64, measure: f64) -> Schedule {
    Schedule {
        warm_up: Duration::from_secs_f64(warm_up),
        measure: Duration::from_secs_f64(measure),
    }
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let quick = options.quick;
    let plan = Plan::new(options);
    let bench_dir = crate::workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    eprintln!(
        "    building sms-notify-server ({})",
        if plan.release { "release" } else { "debug" }
    );
    let binary = service::build(plan.release)?;
    let cpu_reference = service::cpu_reference()?;
    let load_before = load_average();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let mut bench = Bench {
        plan,
        binary,
        bench_dir: bench_dir.clone(),
        figures: Vec::new(),
        shared_store: None,
        after_start_jobs: false,
    };
    if let Some(minutes) = options.soak_minutes {
        let report = runtime.block_on(bench.soak(minutes))?;
        return soak::write(&bench_dir, &report);
    }
    runtime.block_on(bench.all())?;

    let report = Report {
        title: format!(
            "sms-notify benchmark{}",
            if quick { " (quick: a smoke run, figures not comparable)" } else { "" }
        ),
        conditions: vec![
            format!(
                "service: {} build of {}",
                if bench.plan.release { "release" } else { "debug" },
                git_head()
            ),
            format!(
                "machine: {} cores shared with the load generator and the database; load average {load_before:.1} at start, {:.1} at end",
                std::thread::available_parallelism().map_or(0, usize::from),
                load_average()
            ),
            format!(
                "machine speed: PostgreSQL counts through 5 million rows in {} ms (best of 3, one core; lower is faster): compare figures only between runs with similar speeds",
                cpu_reference.as_millis()
            ),
            format!(
                "fake Twilio: {} ms per call, DISPATCH_CONCURRENCY={DISPATCH_CONCURRENCY}; service logs (JSON, info) in target/bench/STORE-SCENARIO.log",
                TWILIO_LATENCY.as_millis()
            ),
            format!(
                "API figures: {} s warm-up, {} s measured; dispatch: {} s warm-up, {} s measured",
                bench.plan.api.warm_up.as_secs_f64(),
                bench.plan.api.measure.as_secs_f64(),
                bench.plan.dispatch.warm_up.as_secs_f64(),
                bench.plan.dispatch.measure.as_secs_f64()
            ),
        ],
        figures: bench.figures,
    };
    let markdown = report.markdown();
    std::fs::write(bench_dir.join("report.md"), &markdown)?;
    std::fs::write(
        bench_dir.join("report.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    println!("{markdown}");
    eprintln!(
        "    written to {} and report.json",
        bench_dir.join("report.md").display()
    );
    Ok(())
}

struct Bench {
    plan: Plan,
    binary: PathBuf,
    bench_dir: PathBuf,
    figures: Vec<Figure>,
    /// While set, scenarios run on this database (the history's) instead of a fresh one.
    shared_store: Option<String>,
    /// While set, a scenario starts once its service's first retention run (at its start,
    /// with the rollups brought up to date) has finished, as on an instance that has been
    /// running: the history comparison compares the scenarios' figures, not their start-up work.
    after_start_jobs: bool,
}

impl Bench {
    async fn all(&mut self) -> anyhow::Result<()> {
        // The SQLite figure is the accepted-messages, dispatch and time-to-provider scenarios
        // on SQLite.
        let only = self.plan.only;
        let wanted = |figures: &[u8]| only.is_none_or(|only| figures.contains(&only));
        let (api, verifications, checks, dispatch, codes, sqlite, guard, end_to_end) = (
            wanted(&[1, 6, 7]),
            wanted(&[2]),
            wanted(&[3]),
            wanted(&[4, 7]),
            wanted(&[5, 7]),
            wanted(&[7]),
            wanted(&[8]),
            wanted(&[12]),
        );
        for store in [StoreKind::Postgres, StoreKind::Sqlite] {
            if store == StoreKind::Sqlite && !sqlite {
                break;
            }
            // The time-to-provider scenario runs under half the accepted-messages rate, or half
            // of its target when that scenario is skipped.
            let mut accepted_per_second = 5_000.0;
            if api {
                accepted_per_second = self.accepted_messages(store).await?;
            }
            if store == StoreKind::Postgres && verifications {
                self.verifications_started(store).await?;
            }
            if store == StoreKind::Postgres && checks {
                self.checks(store).await?;
            }
            if dispatch {
                self.dispatch_at_the_concurrency_cap(store).await?;
                self.dispatch_at_the_sender_rate(store).await?;
            }
            if codes {
                self.time_to_provider(store, accepted_per_second / 2.0)
                    .await?;
            }
            if store == StoreKind::Postgres && guard {
                self.fraud_guard_cost(store).await?;
            }
            if store == StoreKind::Postgres && end_to_end {
                self.cpu_per_message_end_to_end(store).await?;
            }
        }
        let (reports, history) = (wanted(&[9]), wanted(&[10]));
        if reports || history {
            self.history(reports, history).await?;
        }
        if wanted(&[11]) {
            self.client_events().await?;
        }
        if wanted(&[13]) {
            self.capacity().await?;
        }
        Ok(())
    }

    fn figure(
        &mut self,
        number: u8,
        name: &str,
        store: StoreKind,
        (value, unit): (f64, &'static str),
        goal: Goal,
        method: String,
    ) {
        eprintln!("    {number}. {name} ({}): {value:.1} {unit}", store.name());
        self.figures.push(Figure {
            number,
            name: name.to_owned(),
            store,
            value,
            unit,
            goal,
            load: load_average(),
            method,
        });
    }

    /// The API schedule's closed loop against `service`, with the CPU it cost.
    async fn closed_loop(
        &self,
        service: &Service,
        connections: usize,
        make: MakeCall,
        label: &str,
    ) -> anyhow::Result<(Outcome, CpuUse)> {
        let meter = CpuUse::measure(service.pid()?, self.plan.api);
        let outcome =
            load::closed_loop(&service.target, connections, self.plan.api, make, label).await;
        Ok((outcome, cpu::finished(meter).await?))
    }

    /// What each request of a closed-loop figure cost the service and PostgreSQL in CPU, and
    /// how much of the machine the run left idle.
    fn cpu_figures(
        &mut self,
        number: u8,
        request: &str,
        store: StoreKind,
        cpu: &CpuUse,
        outcome: &Outcome,
    ) {
        self.cpu_per_request(number, request, store, cpu, outcome);
        self.figure(
            number,
            "machine idle during the run",
            store,
            (cpu.idle_percent(), "%"),
            Goal::None,
            "idle and iowait share of both cores within the measurement window (/proc/stat): near 0, the run measured the machine's capacity".to_owned(),
        );
    }

    /// What each request of a closed-loop figure cost the service and PostgreSQL in CPU.
    fn cpu_per_request(
        &mut self,
        number: u8,
        request: &str,
        store: StoreKind,
        cpu: &CpuUse,
        outcome: &Outcome,
    ) {
        let (service, postgres) = cpu.per_request(outcome);
        let method = "user and system CPU time (from /proc) within the measurement window, divided by the requests answered in it";
        self.figure(
            number,
            &format!("service CPU per {request}"),
            store,
            (service, "µs"),
            Goal::None,
            method.to_owned(),
        );
        if let (StoreKind::Postgres, Some(postgres)) = (store, postgres) {
            self.figure(
                number,
                &format!("PostgreSQL CPU per {request}"),
                store,
                (postgres, "µs"),
                Goal::None,
                format!("{method}; every PostgreSQL process, background ones included"),
            );
        }
    }

    /// A fresh store and the service on it, Twilio being `twilio`.
    async fn start(
        &self,
        store: StoreKind,
        scenario: &str,
        twilio: &FakeTwilio,
        overrides: &[(&str, String)],
    ) -> anyhow::Result<(FreshStore, Service)> {
        let (fresh, scenario) = match &self.shared_store {
            Some(url) => (
                FreshStore::shared(store, url),
                format!("history-{scenario}"),
            ),
            None => (
                FreshStore::create(store, scenario, &self.bench_dir)?,
                scenario.to_owned(),
            ),
        };
        eprintln!("==> bench: {scenario} ({})", store.name());
        let service = self.start_on(&fresh, &scenario, twilio, overrides).await?;
        if self.after_start_jobs {
            let log = self
                .bench_dir
                .join(format!("{}-{scenario}.log", fresh.kind.name()));
            history::wait_for_retention(&log, Duration::from_secs(120)).await?;
        }
        Ok((fresh, service))
    }

    async fn start_on(
        &self,
        fresh: &FreshStore,
        scenario: &str,
        twilio: &FakeTwilio,
        overrides: &[(&str, String)],
    ) -> anyhow::Result<Service> {
        let mut env = vec![
            ("DISPATCH_CONCURRENCY", DISPATCH_CONCURRENCY.to_string()),
            // One API key sends every code of the benchmark.
            ("VERIFY_SENDS_PER_API_KEY", "1000000000".to_owned()),
            // Nobody checks the benchmark's codes, sent to a few ranges: the fraud guard would
            // block them as pumping. Every scenario runs with it off but the guard's cost
            // scenario, which measures it in monitor mode.
            ("FRAUD_MODE", "off".to_owned()),
        ];
        env.extend(overrides.iter().cloned());
        let log = self
            .bench_dir
            .join(format!("{}-{scenario}.log", fresh.kind.name()));
        Service::start(
            &self.binary,
            &fresh.database_url,
            &twilio.base_url,
            &env,
            &log,
        )
        .await
    }

    /// Accepted messages per second, latency at a fixed rate, memory.
    async fn accepted_messages(&mut self, store: StoreKind) -> anyhow::Result<f64> {
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let (_fresh, service) = self.start(store, "messages", &twilio, &[]).await?;
        let idle_rss = service.resident_set_bytes()?;

        // The latency first, at a steady rate the dispatcher keeps up with, before the closed
        // loop leaves it a backlog to drain.
        let paced = load::open_loop(
            &service.target,
            CONNECTIONS,
            LATENCY_RATE,
            self.plan.api,
            Arc::new(message_call),
            "POST /v1/messages at 1,000/s",
        )
        .await;
        paced.check("latency at 1,000 requests/s")?;
        let method = format!("open loop at {LATENCY_RATE} requests/s over {CONNECTIONS} connections; latency from each request's planned start (coordinated omission)");
        self.figure(
            1,
            "p50 latency at 1,000 requests/s",
            store,
            (paced.latency_ms(0.5), "ms"),
            Goal::None,
            method.clone(),
        );
        self.figure(
            1,
            "p99 latency at 1,000 requests/s",
            store,
            (paced.latency_ms(0.99), "ms"),
            Goal::AtMost(20.0),
            method,
        );
        let (accepted, cpu) = self
            .closed_loop(
                &service,
                CONNECTIONS,
                Arc::new(message_call),
                "POST /v1/messages",
            )
            .await?;
        accepted.check("accepted messages")?;
        let end_rss = service.resident_set_bytes()?;
        let rate = accepted.per_second();
        self.figure(
            1,
            "accepted messages (POST /v1/messages, template)",
            store,
            (rate, "/s"),
            Goal::AtLeast(5_000.0),
            format!("closed loop, {CONNECTIONS} keep-alive connections, each message to its own number, the dispatcher sending meanwhile"),
        );
        self.cpu_figures(1, "accepted message", store, &cpu, &accepted);

        self.figure(
            6,
            "resident set, idle",
            store,
            (mebibytes(idle_rss), "MiB"),
            Goal::AtMost(30.0),
            "VmRSS of the service once it answers /healthz".into(),
        );
        self.figure(
            6,
            "resident set, end of figure 1",
            store,
            (mebibytes(end_rss), "MiB"),
            Goal::AtMost(150.0),
            "VmRSS right after figure 1's closed-loop run, which follows its latency run".into(),
        );
        ensure_twilio_content(&twilio)?;
        service.stop().await?;
        Ok(rate)
    }

    /// Verifications started per second, and again at the earlier connection count.
    async fn verifications_started(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let (started, cpu) = self.verifications_started_over(store, CONNECTIONS).await?;
        self.figure(
            2,
            "verifications started (POST /v1/verifications)",
            store,
            (started.per_second(), "/s"),
            Goal::AtLeast(3_000.0),
            format!("closed loop, {CONNECTIONS} connections, one API key, each to its own number; each stores a verification, a code and its message, and sends it"),
        );
        self.cpu_figures(2, "verification", store, &cpu, &started);
        let (few, few_cpu) = self
            .verifications_started_over(store, FEW_CONNECTIONS)
            .await?;
        self.figure(
            2,
            &format!("verifications started, {FEW_CONNECTIONS} connections"),
            store,
            (few.per_second(), "/s"),
            Goal::AtLeast(3_000.0),
            format!("as above with {FEW_CONNECTIONS} connections (sessions 1-5's count), on a fresh store and service: fewer requests wait together, so each batch is smaller"),
        );
        self.cpu_per_request(
            2,
            &format!("verification, {FEW_CONNECTIONS} connections"),
            store,
            &few_cpu,
            &few,
        );
        self.figure(
            2,
            &format!("machine idle, {FEW_CONNECTIONS} connections"),
            store,
            (few_cpu.idle_percent(), "%"),
            Goal::None,
            format!("as the idle share above, for the run at {FEW_CONNECTIONS} connections"),
        );
        Ok(())
    }

    /// A closed loop of verifications over `connections`, on a fresh store and service.
    async fn verifications_started_over(
        &self,
        store: StoreKind,
        connections: usize,
    ) -> anyhow::Result<(Outcome, CpuUse)> {
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let scenario = format!("verifications_{connections}");
        let (_fresh, service) = self.start(store, &scenario, &twilio, &[]).await?;
        let (started, cpu) = self
            .closed_loop(
                &service,
                connections,
                Arc::new(verification_call),
                "POST /v1/verifications",
            )
            .await?;
        started.check("verifications started")?;
        ensure_twilio_content(&twilio)?;
        service.stop().await?;
        Ok((started, cpu))
    }

    /// Checks per second, against verifications started beforehand.
    async fn checks(&mut self, store: StoreKind) -> anyhow::Result<()> {
        const VERIFICATIONS: u64 = 200;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let overrides = [("VERIFY_MAX_CHECKS", "1000000000".to_owned())];
        let (_fresh, service) = self.start(store, "checks", &twilio, &overrides).await?;
        let mut connection = load::Connection::new(&service.target);
        let ids = start_verifications(&mut connection, VERIFICATIONS).await?;
        let ids: Arc<[String]> = ids.into();
        let make: MakeCall = Arc::new(move |n| Call {
            path: format!(
                "/v1/verifications/{}/check",
                ids[(n % VERIFICATIONS) as usize]
            ),
            // Wrong (but for one chance in a million): every check compares against every code.
            body: json!({"code": "000000"}).to_string(),
            twilio_signature: None,
        });
        let (checked, cpu) = self
            .closed_loop(
                &service,
                CONNECTIONS,
                make,
                "POST /v1/verifications/{id}/check",
            )
            .await?;
        checked.check("checks")?;
        self.figure(
            3,
            "checks (POST /v1/verifications/{id}/check)",
            store,
            (checked.per_second(), "/s"),
            Goal::AtLeast(5_000.0),
            format!("closed loop, {CONNECTIONS} connections, over {VERIFICATIONS} pending verifications with wrong codes (VERIFY_MAX_CHECKS raised so they stay pending)"),
        );
        self.cpu_figures(3, "check", store, &cpu, &checked);
        service.stop().await
    }

    /// The guard's cost scenario: what the fraud guard adds to starting a verification. Every policy computes
    /// its decision and refuses nothing (`FRAUD_MODE=monitor`), against the guard off
    /// (`FRAUD_MODE=off`), in runs that take turns (off, monitor, off, ...) on fresh stores
    /// and services, so that the machine's drift falls on both alike; the medians of
    /// [`GUARD_RUNS`] runs each, their ratio, and the difference of their p99 latencies.
    async fn fraud_guard_cost(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let mut started = [Vec::new(), Vec::new()];
        let mut p99 = [Vec::new(), Vec::new()];
        for run in 0..GUARD_RUNS {
            for (index, mode) in GUARD_MODES.iter().enumerate() {
                let (rate, latency) = self.verifications_in_fraud_mode(store, mode, run).await?;
                started[index].push(rate);
                p99[index].push(latency);
            }
        }
        let median = |values: &[f64]| load::quantile(values, 0.5);
        let (off, monitor) = (median(&started[0]), median(&started[1]));
        let (off_p99, monitor_p99) = (median(&p99[0]), median(&p99[1]));
        let throughput = format!("closed loop, {CONNECTIONS} connections, one API key, each code to its own number (as figure 2), never checked: a worst case for the guard, whose findings are then logged; median of {GUARD_RUNS} runs, each on a fresh store and service, the modes taking turns");
        let latency = format!("open loop at {GUARD_LATENCY_RATE} verifications/s over {CONNECTIONS} connections before each closed loop, latency from each request's planned start; median of the {GUARD_RUNS} runs' p99");
        for (mode, value) in GUARD_MODES.iter().zip([off, monitor]) {
            self.figure(
                8,
                &format!("verifications started, FRAUD_MODE={mode}"),
                store,
                (value, "/s"),
                Goal::None,
                throughput.clone(),
            );
        }
        self.figure(
            8,
            "verifications started, monitor as a share of off",
            store,
            (100.0 * monitor / off, "%"),
            Goal::AtLeast(95.0),
            "the two medians above divided: the guard costs at most 5% of the rate when 95% or more".to_owned(),
        );
        for (mode, value) in GUARD_MODES.iter().zip([off_p99, monitor_p99]) {
            self.figure(
                8,
                &format!("p99 latency at {GUARD_LATENCY_RATE}/s, FRAUD_MODE={mode}"),
                store,
                (value, "ms"),
                Goal::None,
                latency.clone(),
            );
        }
        self.figure(
            8,
            "p99 latency added by the guard (monitor - off)",
            store,
            (monitor_p99 - off_p99, "ms"),
            Goal::AtMost(1.0),
            "the two medians of p99 above subtracted".to_owned(),
        );
        Ok(())
    }

    /// One run of the guard's cost scenario: on a fresh store and service in `mode`, the p99 latency of an
    /// open loop of verifications, then the rate of a closed loop.
    async fn verifications_in_fraud_mode(
        &self,
        store: StoreKind,
        mode: &str,
        run: usize,
    ) -> anyhow::Result<(f64, f64)> {
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let scenario = format!("fraud_{mode}_{run}");
        let overrides = [("FRAUD_MODE", (*mode).to_owned())];
        let (_fresh, service) = self.start(store, &scenario, &twilio, &overrides).await?;
        let paced = load::open_loop(
            &service.target,
            CONNECTIONS,
            GUARD_LATENCY_RATE,
            self.plan.api,
            Arc::new(verification_call),
            &format!("POST /v1/verifications at {GUARD_LATENCY_RATE}/s, FRAUD_MODE={mode}"),
        )
        .await;
        paced.check("verification latency")?;
        // Numbers apart from the paced run's: each code to its own number.
        let (started, _cpu) = self
            .closed_loop(
                &service,
                CONNECTIONS,
                Arc::new(|n| verification_call(n + 5_000_000)),
                &format!("POST /v1/verifications, FRAUD_MODE={mode}"),
            )
            .await?;
        started.check("verifications started")?;
        ensure_twilio_content(&twilio)?;
        service.stop().await?;
        Ok((started.per_second(), paced.latency_ms(0.99)))
    }

    /// The CPU a message costs from its request to Twilio, every step included: `end_to_end`
    /// messages accepted over the accepted-messages scenario's keep-alive connections, then the
    /// wait until the fake Twilio (the dispatch scenario's latency and concurrency) has every one.
    async fn cpu_per_message_end_to_end(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let count = self.plan.end_to_end;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let (_fresh, service) = self.start(store, "end_to_end", &twilio, &[]).await?;
        // Under a profiler the service runs many times slower: with all of the accepted-messages
        // scenario's connections, requests would time out waiting for the database.
        let connections = if std::env::var_os(service::PROFILER_VARIABLE).is_some() {
            PROFILED_CONNECTIONS
        } else {
            CONNECTIONS
        };
        let meter = Meter::start(service.pid()?)?;
        let started = tokio::time::Instant::now();
        let accepted =
            load::fill(&service.target, connections, count, Arc::new(message_call)).await;
        if accepted.succeeded < count {
            bail!(
                "accepted only {} of {count} messages: {}",
                accepted.succeeded,
                accepted.first_failure.as_deref().unwrap_or("no failure")
            );
        }
        let sent = twilio.accepted_counter();
        let end = started + END_TO_END_PATIENCE;
        let progress = load::Progress::start("sending", started, end, sent.clone());
        while sent.load(std::sync::atomic::Ordering::Relaxed) < count {
            if tokio::time::Instant::now() >= end {
                progress.finish();
                bail!(
                    "only {} of {count} messages reached Twilio within {END_TO_END_PATIENCE:?}",
                    sent.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        progress.finish();
        let elapsed = started.elapsed();
        let cpu = meter.stop()?;
        ensure_twilio_content(&twilio)?;
        let (service_ms, postgres_us) = cpu.per_thousand(count);
        let method = format!("{count} messages accepted over {connections} keep-alive connections (closed loop, as figure 1) and sent to Twilio at {} ms, DISPATCH_CONCURRENCY={DISPATCH_CONCURRENCY}, JSON logs at info; user and system CPU time (from /proc) from the first request until Twilio had the last message ({:.1} s)", TWILIO_LATENCY.as_millis(), elapsed.as_secs_f64());
        self.figure(
            12,
            "service CPU per 1,000 messages, accepted and sent",
            store,
            (service_ms, "ms"),
            Goal::AtMost(100.0),
            method.clone(),
        );
        if let Some(postgres_us) = postgres_us {
            self.figure(
                12,
                "PostgreSQL CPU per message, accepted and sent",
                store,
                (postgres_us, "µs"),
                Goal::None,
                format!("{method}; every PostgreSQL process, background ones included"),
            );
        }
        self.figure(
            12,
            "machine idle during the run",
            store,
            (cpu.idle_percent(), "%"),
            Goal::None,
            "idle and iowait share of both cores over the run (/proc/stat)".to_owned(),
        );
        service.stop().await
    }

    /// Queues `count` messages on `fresh` through a service whose Twilio never answers in
    /// time and which sends one at a time, then stops it: a backlog for a dispatcher to start on.
    async fn backlog(&self, fresh: &FreshStore, scenario: &str, count: u64) -> anyhow::Result<()> {
        let stalled = FakeTwilio::start(Duration::from_secs(3600), None).await?;
        let overrides = [
            ("DISPATCH_CONCURRENCY", "1".to_owned()),
            ("SHUTDOWN_GRACE_SECONDS", "1".to_owned()),
        ];
        let service = self
            .start_on(fresh, &format!("{scenario}-backlog"), &stalled, &overrides)
            .await?;
        let filled = load::fill(&service.target, CONNECTIONS, count, Arc::new(message_call)).await;
        if filled.succeeded < count {
            bail!(
                "queued only {} of {count} messages: {}",
                filled.succeeded,
                filled.first_failure.as_deref().unwrap_or("no failure")
            );
        }
        // The one send in flight is handed back at shutdown.
        service.stop().await
    }

    /// Dispatch: a backlog drained through Twilio at 100 ms per call, 200 calls in flight.
    async fn dispatch_at_the_concurrency_cap(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let ceiling = f64::from(DISPATCH_CONCURRENCY) / TWILIO_LATENCY.as_secs_f64();
        let window = self.plan.dispatch.warm_up + self.plan.dispatch.measure;
        let count = (ceiling * window.as_secs_f64() * 1.5) as u64;
        eprintln!(
            "==> bench: dispatch at the concurrency cap ({})",
            store.name()
        );
        let fresh = FreshStore::create(store, "dispatch", &self.bench_dir)?;
        self.backlog(&fresh, "dispatch", count).await?;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let service = self.start_on(&fresh, "dispatch", &twilio, &[]).await?;
        let rate = self.dispatch_rate(&twilio, count, "dispatching").await?;
        self.figure(
            4,
            "dispatched at DISPATCH_CONCURRENCY=200, Twilio 100 ms (ceiling 2,000/s)",
            store,
            (rate, "SMS/s"),
            Goal::AtLeast(0.95 * ceiling),
            format!("a backlog of {count} messages queued beforehand; Twilio's arrivals counted after {} s", self.plan.dispatch.warm_up.as_secs_f64()),
        );
        service.stop().await
    }

    /// Dispatch: the same with `SENDER_MPS=50`, and a Twilio that refuses more than 50 per
    /// second (a token bucket) with 429.
    async fn dispatch_at_the_sender_rate(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let window = self.plan.dispatch.warm_up + self.plan.dispatch.measure;
        let count = (f64::from(SENDER_MPS) * window.as_secs_f64() * 2.0) as u64;
        eprintln!("==> bench: dispatch at SENDER_MPS ({})", store.name());
        let fresh = FreshStore::create(store, "mps", &self.bench_dir)?;
        self.backlog(&fresh, "mps", count).await?;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, Some(SENDER_MPS)).await?;
        let overrides = [("SENDER_MPS", SENDER_MPS.to_string())];
        let service = self.start_on(&fresh, "mps", &twilio, &overrides).await?;
        let rate = self
            .dispatch_rate(&twilio, count, "dispatching at 50/s")
            .await?;
        let method = format!(
            "a backlog of {count} messages; Twilio answers 429 beyond 50/s (a token bucket of 50)"
        );
        self.figure(
            4,
            "dispatched at SENDER_MPS=50",
            store,
            (rate, "SMS/s"),
            Goal::Within {
                target: f64::from(SENDER_MPS),
                tolerance: 0.05,
            },
            method.clone(),
        );
        self.figure(
            4,
            "429s from Twilio at SENDER_MPS=50",
            store,
            (twilio.too_many_requests() as f64, ""),
            Goal::AtMost(0.0),
            method,
        );
        service.stop().await
    }

    /// Twilio's accepted sends per second in the dispatch window, which starts now.
    async fn dispatch_rate(
        &self,
        twilio: &FakeTwilio,
        backlog: u64,
        label: &str,
    ) -> anyhow::Result<f64> {
        let schedule = self.plan.dispatch;
        let started = tokio::time::Instant::now();
        let window_start = started + schedule.warm_up;
        let end = window_start + schedule.measure;
        let progress = load::Progress::start(label, started, end, twilio.accepted_counter());
        tokio::time::sleep_until(end).await;
        progress.finish();
        let (from, to) = (window_start.into_std(), end.into_std());
        let arrivals = twilio.arrivals();
        if arrivals.len() as u64 >= backlog {
            bail!("{label}: the backlog of {backlog} ran out before the window ended");
        }
        ensure_twilio_content(twilio)?;
        let in_window = arrivals
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count();
        Ok(in_window as f64 / schedule.measure.as_secs_f64())
    }

    /// Time to provider: from the API's answer to a new verification until Twilio receives its
    /// code, with the service idle, then under half the accepted-messages load.
    async fn time_to_provider(
        &mut self,
        store: StoreKind,
        background_rate: f64,
    ) -> anyhow::Result<()> {
        let twilio = Arc::new(FakeTwilio::start(TWILIO_LATENCY, None).await?);
        let (_fresh, service) = self.start(store, "codes", &twilio, &[]).await?;
        let mut next_code = 0;
        if self.after_start_jobs {
            // The first codes meet connections that have not yet planned the statements of a
            // code's path, nor read the catalog of each week's partitions: an instance that
            // has been running has.
            codes_to_provider(
                &service.target,
                &twilio,
                &mut next_code,
                WARM_UP_CODES,
                None,
            )
            .await?;
        }
        let idle = codes_to_provider(
            &service.target,
            &twilio,
            &mut next_code,
            self.plan.idle_codes,
            None,
        )
        .await?;
        let method = format!("one verification every {} ms, each to its own number; from reading the API's 201 to the fake Twilio receiving the send (negative: Twilio had it first)", CODE_SPACING.as_millis());
        self.figure(
            5,
            "time to provider, idle, p50",
            store,
            (load::quantile(&idle, 0.5), "ms"),
            Goal::None,
            method.clone(),
        );
        self.figure(
            5,
            "time to provider, idle, p99",
            store,
            (load::quantile(&idle, 0.99), "ms"),
            Goal::AtMost(10.0),
            method.clone(),
        );

        let schedule = self.plan.api;
        let background = {
            let target = service.target.clone();
            tokio::spawn(async move {
                load::open_loop(
                    &target,
                    CONNECTIONS,
                    background_rate,
                    schedule,
                    Arc::new(message_call),
                    "background messages",
                )
                .await
            })
        };
        tokio::time::sleep(schedule.warm_up).await;
        let end = tokio::time::Instant::now() + schedule.measure;
        let loaded = codes_to_provider(
            &service.target,
            &twilio,
            &mut next_code,
            usize::MAX,
            Some(end),
        )
        .await?;
        let background = background.await?;
        background.check("background messages")?;
        let method = format!("{method}, while POST /v1/messages runs open loop at {background_rate:.0}/s (half of figure 1)");
        self.figure(
            5,
            "time to provider, at half of figure 1, p50",
            store,
            (load::quantile(&loaded, 0.5), "ms"),
            Goal::None,
            method.clone(),
        );
        self.figure(
            5,
            "time to provider, at half of figure 1, p99",
            store,
            (load::quantile(&loaded, 0.99), "ms"),
            Goal::None,
            method,
        );
        service.stop().await
    }
}

/// Starts verifications one every [`CODE_SPACING`], `count` of them or until `end`, and returns
/// how long each code took from the API's answer to Twilio, in milliseconds.
async fn codes_to_provider(
    target: &Target,
    twilio: &FakeTwilio,
    next: &mut u64,
    count: usize,
    end: Option<tokio::time::Instant>,
) -> anyhow::Result<Vec<f64>> {
    let mut connection = load::Connection::new(target);
    let mut latencies = Vec::new();
    while latencies.len() < count && end.is_none_or(|end| tokio::time::Instant::now() < end) {
        let pace = tokio::time::Instant::now() + CODE_SPACING;
        let to = code_number(*next);
        *next += 1;
        let (status, body) = connection
            .post(&Call {
                path: "/v1/verifications".into(),
                body: json!({"to": to}).to_string(),
                twilio_signature: None,
            })
            .await?;
        let answered = std::time::Instant::now();
        if !status.is_success() {
            bail!(
                "starting a verification answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let arrived = twilio
            .arrival_for(&to, CODE_PATIENCE)
            .await
            .with_context(|| format!("no code reached Twilio within {CODE_PATIENCE:?}"))?;
        let ms = match arrived.checked_duration_since(answered) {
            Some(after) => after.as_secs_f64() * 1e3,
            None => -(answered.duration_since(arrived).as_secs_f64() * 1e3),
        };
        latencies.push(ms);
        tokio::time::sleep_until(pace).await;
    }
    Ok(latencies)
}

/// A message from the `two-factor-auth` template to its own number.
fn message_call(n: u64) -> Call {
    Call {
        path: "/v1/messages".into(),
        body: json!({
            "to": format!("+1555{:07}", n % 10_000_000),
            "template": "two-factor-auth",
            "data": {"code": "123456", "expiryMinutes": 10},
        })
        .to_string(),
        twilio_signature: None,
    }
}

/// Starts `count` verifications one after the other (numbers as [`verification_call`] makes
/// them) and answers their ids.
async fn start_verifications(
    connection: &mut load::Connection,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in 0..count {
        let (status, body) = connection.post(&verification_call(n)).await?;
        if !status.is_success() {
            bail!(
                "starting a verification answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let verification: serde_json::Value = serde_json::from_slice(&body)?;
        ids.push(
            verification["id"]
                .as_str()
                .context("a verification without an id")?
                .to_owned(),
        );
    }
    Ok(ids)
}

fn verification_call(n: u64) -> Call {
    Call {
        path: "/v1/verifications".into(),
        body: json!({"to": format!("+1556{:07}", n % 10_000_000)}).to_string(),
        twilio_signature: None,
    }
}

/// The time-to-provider scenario's numbers, apart from every other figure's.
fn code_number(n: u64) -> String {
    format!("+447700{:06}", n % 1_000_000)
}

/// Every send Twilio saw was well formed: a misconfigured run must not pass for a fast one.
fn ensure_twilio_content(twilio: &FakeTwilio) -> anyhow::Result<()> {
    match twilio.rejected() {
        0 => Ok(()),
        rejected => bail!("the fake Twilio rejected {rejected} malformed sends"),
    }
}

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The one-minute load average, or NaN where there is none to read.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn git_head() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::workspace_root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "an unknown commit".into())
}
