//! The history figures (issue 23 item 4, issue 20 item 6): what months of stored traffic cost.
//! One PostgreSQL database per run gets a dataset (`history.sql`: messages with their attempts
//! and receipts, verifications with their codes, spread over the last `SPAN_DAYS` and their
//! weekly partitions), generated with `generate_series` rather than through the API, which
//! would take hours. On it, the reports' figure times the usage and conversion reports over the
//! whole dataset (admin key), and the history-cost figure runs the empty-database scenarios
//! (their own code) on a fresh database and on the dataset, one after the other, reporting each
//! pair and its ratio; then a retention run removes the oldest part while an open-loop load
//! measures the API's latency.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

use super::dashboard;
use super::fake_twilio::FakeTwilio;
use super::load::{self, Target};
use super::report::{Figure, Goal};
use super::service::{FreshStore, StoreKind};
use super::{message_call, Bench, CONNECTIONS, LATENCY_RATE, TWILIO_LATENCY};

/// The dataset's statements, in steps (see the file's header).
const DATASET_SQL: &str = include_str!("history.sql");
/// How far back the dataset reaches: within the default retention, so that only the
/// retention run removes any of it.
const SPAN_DAYS: i64 = 89;
/// The retention run's `RETENTION_DAYS`: the dataset's oldest 30 days are past it.
const RETENTION_RUN_DAYS: i64 = SPAN_DAYS - 30;
/// Group 9 of the dataset's steps (vacuum) settles it and is timed apart from the generation.
const SETTLING_GROUP: u32 = 9;
/// The admin key the reports are asked with (every API key's rows).
const ADMIN_KEY: &str = "bench-admin-0123456789abcdef";
/// Runs of each report: a median of three, or one in the smoke run (a report the service gives
/// up on takes its whole request timeout).
const REPORT_RUNS: usize = 3;
/// The open-loop rate of the retention run: the accepted-messages latency run's, or what the
/// debug build of `--quick` serves without queueing on a busy machine.
const RETENTION_LOAD_RATE: f64 = LATENCY_RATE;
const QUICK_RETENTION_LOAD_RATE: f64 = 200.0;
/// The share of empty's value the history's may lose (rates) or add (times).
const TOLERANCE_PERCENT: f64 = 10.0;

/// The order of a pair's runs, `true` on the history's database: each side twice, the history's
/// between the empty database's, so that a machine speeding up or slowing down over the pair
/// (by a quarter within minutes, on a shared machine) weighs on both sides alike.
const ROUNDS: [bool; 4] = [false, true, true, false];

/// The figures of each run of a scenario on one side of a pair.
type Runs = Vec<Vec<Figure>>;

/// Set (to anything): the history's database is kept after the run, its URL printed, so that
/// its statements can be examined (`EXPLAIN`) on the full dataset; dropping it is then the
/// operator's.
const KEEP_VARIABLE: &str = "SMS_NOTIFY_BENCH_KEEP_HISTORY";

/// How much history: the issue's sizes, or a tenth of a hundredth of them for `--quick`.
#[derive(Clone, Copy)]
struct Size {
    messages: u64,
    verifications: u64,
}

impl Size {
    fn of(quick: bool) -> Self {
        if quick {
            Self {
                messages: 100_000,
                verifications: 30_000,
            }
        } else {
            Self {
                messages: 10_000_000,
                verifications: 3_000_000,
            }
        }
    }
}

/// The generated database, removed with it.
struct Dataset {
    store: FreshStore,
    size: Size,
    /// How long its rows and indexes took (not the vacuum after them).
    generated: Duration,
    /// The dataset's first and last moments, in milliseconds since the epoch.
    start_ms: i64,
    end_ms: i64,
}

impl Bench {
    /// The history's reports (`reports`) and its comparison with an empty database (`costs`) on
    /// one generated dataset.
    pub(super) async fn history(&mut self, reports: bool, costs: bool) -> anyhow::Result<()> {
        // Reported with the reports' figure, or with the history-cost one when only that runs.
        let number = if reports { 9 } else { 10 };
        let dataset = self.dataset(number).await?;
        let folded = build_rollups(&dataset.store.database_url, self.plan.release)?;
        self.figure(
            number,
            "hourly rollups built over the history",
            StoreKind::Postgres,
            (folded.as_secs_f64(), "s"),
            Goal::None,
            "`sms-notify report fold --settle 1m` once after the generation: the service's own fold (RollupJob's, set-based per week of hours), every hour before the current one".to_owned(),
        );
        self.figure(
            number,
            "history dataset and its rollups, together",
            StoreKind::Postgres,
            ((dataset.generated + folded).as_secs_f64(), "s"),
            Goal::AtMost(300.0),
            "the generation's and the fold's times above, added".to_owned(),
        );
        if reports {
            self.reports(&dataset).await?;
        }
        if costs {
            self.costs_beside_empty(&dataset).await?;
            self.retention_under_load(&dataset).await?;
        }
        quiesce(&dataset.store.database_url).await
    }

    /// A database the service migrated, then the dataset generated into it; its figures are
    /// reported under figure `number`.
    async fn dataset(&mut self, number: u8) -> anyhow::Result<Dataset> {
        let size = Size::of(self.plan.quick);
        eprintln!(
            "==> bench: the history dataset ({} messages, {} verifications over {SPAN_DAYS} days)",
            size.messages, size.verifications
        );
        let mut store = FreshStore::create(StoreKind::Postgres, "history", &self.bench_dir)?;
        if std::env::var_os(KEEP_VARIABLE).is_some() {
            store.keep();
            eprintln!(
                "    {KEEP_VARIABLE} is set: {} stays after the run",
                store.database_url
            );
        }
        // The service's own migrations, and the weeks it makes ahead.
        // Its first retention run is let finish: stopped in the middle, it would hold the
        // job's lease for its length, and no instance of the figures would run the job.
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let migrating = self
            .start_on(&store, "history-migrate", &twilio, &[])
            .await?;
        wait_for_retention(
            &self.bench_dir.join("postgres-history-migrate.log"),
            Duration::from_secs(60),
        )
        .await?;
        migrating.stop().await?;
        let end_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
        let start_ms = end_ms - SPAN_DAYS * DAY_MS;
        let steps = dataset_steps(size, start_ms, end_ms)?;
        let url = store.database_url.clone();
        let (generated, settled) =
            tokio::task::spawn_blocking(move || run_steps(&url, &steps)).await??;
        let rows: f64 = psql_value(
            &store.database_url,
            "SELECT sum(c.reltuples) FROM pg_class AS c JOIN pg_inherits AS i \
             ON i.inhrelid = c.oid WHERE c.relkind = 'r' AND c.reltuples > 0",
        )?
        .parse()
        .context("cannot read the dataset's row count")?;
        let database_size = psql_value(
            &store.database_url,
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
        )?;
        eprintln!(
            "    dataset: {rows:.0} rows in {:.1} s ({:.0} rows/s), then vacuumed in {:.1} s; {database_size}",
            generated.as_secs_f64(),
            rows / generated.as_secs_f64(),
            settled.as_secs_f64()
        );
        let method = format!(
            "{} messages (codes of the verifications among them) with their attempts, receipts and idempotency keys, {} verifications with their codes, over {SPAN_DAYS} days of weekly partitions ({database_size}); SQL generate_series, rows first and indexes built after, two sessions at a time",
            size.messages, size.verifications
        );
        self.figure(
            number,
            "history dataset generated",
            StoreKind::Postgres,
            (generated.as_secs_f64(), "s"),
            Goal::None,
            method,
        );
        self.figure(
            number,
            "history dataset generated, rows per second",
            StoreKind::Postgres,
            (rows / generated.as_secs_f64(), "/s"),
            Goal::None,
            format!("{rows:.0} rows of the partitioned tables over the time above"),
        );
        self.figure(
            number,
            "history dataset vacuumed (after its generation)",
            StoreKind::Postgres,
            (settled.as_secs_f64(), "s"),
            Goal::None,
            "VACUUM of the generated tables, which autovacuum would otherwise start during the figures".to_owned(),
        );
        Ok(Dataset {
            store,
            size,
            generated,
            start_ms,
            end_ms,
        })
    }

    /// The usage and conversion reports over the whole dataset, as an admin asks.
    async fn reports(&mut self, dataset: &Dataset) -> anyhow::Result<()> {
        eprintln!("==> bench: reports over the history (postgres)");
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let overrides = [("ADMIN_API_KEYS", format!("ops:{ADMIN_KEY}"))];
        let service = self
            .start_on(&dataset.store, "history-reports", &twilio, &overrides)
            .await?;
        let admin = Target {
            address: service.target.address,
            api_key: ADMIN_KEY.into(),
        };
        let range = format!(
            "since={}&until={}",
            rfc3339(dataset.start_ms - DAY_MS),
            rfc3339(dataset.end_ms + DAY_MS)
        );
        let runs = if self.plan.quick { 1 } else { REPORT_RUNS };
        for (name, path) in [
            ("usage", "/v1/reports/usage"),
            ("conversion", "/v1/reports/conversion"),
        ] {
            let (median, refused) = time_report(
                &admin,
                &dataset.store.database_url,
                &format!("{path}?{range}"),
                runs,
            )
            .await?;
            let mut method = format!(
                "GET {path} over the whole dataset ({} messages, {} verifications, {SPAN_DAYS} days) grouped by day, admin key, median of {runs} runs one after the other; the reports read the hourly rollups built above, raw rows only after their watermark",
                dataset.size.messages, dataset.size.verifications
            );
            if let Some(refused) = refused {
                method.push_str(&format!(
                    "; {refused}: the time is when the service gave up, a lower bound"
                ));
            }
            self.figure(
                9,
                &format!("{name} report over the history"),
                StoreKind::Postgres,
                (median, "ms"),
                Goal::AtMost(500.0),
                method,
            );
        }
        self.dashboard_pages(&admin, dataset).await?;
        service.stop().await
    }

    /// Each dashboard page as an operator opens it, on the whole dataset; the
    /// searches ask for a number, a message and a verification the dataset holds.
    async fn dashboard_pages(&mut self, service: &Target, dataset: &Dataset) -> anyhow::Result<()> {
        eprintln!("==> bench: dashboard pages over the history (postgres)");
        let url = &dataset.store.database_url;
        // The newest message: inside the search's default period.
        let newest = psql_value(
            url,
            r#"SELECT id || ' ' || "to" FROM messages ORDER BY created_at DESC, id DESC LIMIT 1"#,
        )?;
        let Some((message, number)) = newest.split_once(' ') else {
            bail!("the dataset has no message");
        };
        let verification = psql_value(
            url,
            "SELECT id FROM verifications ORDER BY created_at DESC, id DESC LIMIT 1",
        )?;
        let number: String = url::form_urlencoded::byte_serialize(number.as_bytes()).collect();
        let pages = [
            ("overview", "/dashboard".to_owned()),
            ("overview's figures", "/dashboard/overview.json".to_owned()),
            ("conversion", "/dashboard/conversion".to_owned()),
            ("messages, no filter", "/dashboard/messages".to_owned()),
            (
                "messages by number",
                format!("/dashboard/messages?to={number}"),
            ),
            (
                "messages by status (failed)",
                "/dashboard/messages?status=failed".to_owned(),
            ),
            (
                "messages by id (redirected to its timeline)",
                format!("/dashboard/messages?id={message}"),
            ),
            (
                "a message's timeline",
                format!("/dashboard/messages/{message}"),
            ),
            (
                "a verification's timeline",
                format!("/dashboard/verifications/{verification}"),
            ),
            ("fraud", "/dashboard/fraud".to_owned()),
            ("templates", "/dashboard/templates".to_owned()),
            ("webhooks", "/dashboard/webhooks".to_owned()),
            ("providers", "/dashboard/providers".to_owned()),
        ];
        let mut operator = dashboard::Operator::log_in(service, ADMIN_KEY).await?;
        for (name, path) in pages {
            let median = operator.time_page(&path).await?;
            let shown = path
                .replace(message, "{id}")
                .replace(&verification, "{id}")
                .replace(&number, "{number}");
            self.figure(
                9,
                &format!("dashboard page: {name}"),
                StoreKind::Postgres,
                (median, "ms"),
                Goal::AtMost(200.0),
                format!(
                    "GET {shown} with an operator's session (POST /dashboard/login with the admin key), over the whole dataset ({} messages, {} verifications, {SPAN_DAYS} days; the number, message and verification are the newest), median of {} requests one after the other on one connection, a redirect followed and counted; a non-2xx answer fails the run",
                    dataset.size.messages,
                    dataset.size.verifications,
                    dashboard::PAGE_RUNS
                ),
            );
        }
        Ok(())
    }

    /// The history-cost figure: the accepted-messages, verifications, checks and time-to-provider
    /// scenarios on empty databases and on the dataset's (`both`), each pair side by side with
    /// its ratio.
    async fn costs_beside_empty(&mut self, dataset: &Dataset) -> anyhow::Result<()> {
        let store = StoreKind::Postgres;
        let url = dataset.store.database_url.clone();
        let mut pairs: Vec<Pair> = Vec::new();

        let runs = self
            .both(&url, |bench| Box::pin(bench.accepted_messages(store)))
            .await?;
        let accepted = Pair::rates(
            "accepted messages (figure 1)",
            &runs,
            1,
            "accepted messages",
        )?;
        let latency = Pair::times(
            "p99 latency at 1,000 requests/s (figure 1)",
            &runs,
            1,
            "p99 latency at 1,000 requests/s",
        )?;
        let background_rate = accepted.empty.mean() / 2.0;
        pairs.extend([accepted, latency]);

        let runs = self
            .both(&url, |bench| {
                Box::pin(async move {
                    let (started, _cpu) =
                        bench.verifications_started_over(store, CONNECTIONS).await?;
                    bench.figure(
                        2,
                        "verifications started (POST /v1/verifications)",
                        store,
                        (started.per_second(), "/s"),
                        Goal::None,
                        String::new(),
                    );
                    Ok(started.per_second())
                })
            })
            .await?;
        pairs.push(Pair::rates(
            "verifications started (figure 2)",
            &runs,
            2,
            "verifications started",
        )?);

        let runs = self
            .both(&url, |bench| {
                Box::pin(async move { bench.checks(store).await.map(|()| 0.0) })
            })
            .await?;
        pairs.push(Pair::rates("checks (figure 3)", &runs, 3, "checks")?);

        let runs = self
            .both(&url, |bench| {
                Box::pin(async move {
                    bench
                        .time_to_provider(store, background_rate)
                        .await
                        .map(|()| 0.0)
                })
            })
            .await?;
        for (label, name) in [
            (
                "time to provider, idle, p50 (figure 5)",
                "time to provider, idle, p50",
            ),
            (
                "time to provider, idle, p99 (figure 5)",
                "time to provider, idle, p99",
            ),
            (
                "time to provider, under load, p99 (figure 5)",
                "time to provider, at half of figure 1, p99",
            ),
        ] {
            pairs.push(Pair::times(label, &runs, 5, name)?);
        }

        let history_rows = format!(
            "{} messages and {} verifications of history",
            dataset.size.messages, dataset.size.verifications
        );
        for pair in pairs {
            let method = format!(
                "the scenario of figure {} as that figure measures it, on fresh databases and on the history's ({history_rows}; what each scenario adds is left, its pending verifications and its queue expired, the tables vacuumed), twice each and interleaved (empty, history, history, empty), each side the mean of its runs ({} empty; {} with history)",
                pair.figure, pair.empty, pair.history
            );
            self.figure(
                10,
                &format!("{}, empty database", pair.label),
                store,
                (pair.empty.mean(), pair.unit),
                Goal::None,
                method.clone(),
            );
            self.figure(
                10,
                &format!("{}, with history", pair.label),
                store,
                (pair.history.mean(), pair.unit),
                Goal::None,
                method.clone(),
            );
            let (empty, history) = (pair.empty.mean(), pair.history.mean());
            let share = 100.0 * history / empty;
            let (goal, meaning) = if pair.higher_is_better {
                (
                    Goal::AtLeast(100.0 - TOLERANCE_PERCENT),
                    "at least 90%: history costs at most a tenth of the rate",
                )
            } else {
                (
                    Goal::AtMost(100.0 + TOLERANCE_PERCENT),
                    "at most 110%: history adds at most a tenth of the time",
                )
            };
            self.figure(
                10,
                &format!("{}, with history as a share of empty", pair.label),
                store,
                (if empty > 0.0 { share } else { f64::NAN }, "%"),
                goal,
                format!("the two values above divided, {meaning}"),
            );
        }
        Ok(())
    }

    /// Runs `scenario` on fresh databases and on the dataset's, in the order of [`ROUNDS`], and
    /// answers the figures each run took, per side (taken back from the report: the history
    /// comparison reports them its own way).
    async fn both<F>(&mut self, shared_url: &str, scenario: F) -> anyhow::Result<[Runs; 2]>
    where
        F: for<'a> Fn(
            &'a mut Bench,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<f64>> + 'a>,
        >,
    {
        let mut runs: [Runs; 2] = Default::default();
        self.after_start_jobs = true;
        for on_history in ROUNDS {
            let before = self.figures.len();
            if on_history {
                self.shared_store = Some(shared_url.to_owned());
            }
            let ran = scenario(self).await;
            self.shared_store = None;
            let taken: Vec<Figure> = self.figures.drain(before..).collect();
            let settled = ran.and_then(|_| {
                if on_history {
                    settle_history(shared_url)
                } else {
                    Ok(())
                }
            });
            if let Err(error) = settled {
                self.after_start_jobs = false;
                return Err(error);
            }
            runs[usize::from(on_history)].push(taken);
        }
        self.after_start_jobs = false;
        Ok(runs)
    }

    /// The history comparison's retention run: an instance serving an open-loop load while
    /// another one, started with a retention that a month of the dataset is past, runs the
    /// retention job at its start (as every instance does); the API's latency over the run.
    async fn retention_under_load(&mut self, dataset: &Dataset) -> anyhow::Result<()> {
        let store = StoreKind::Postgres;
        eprintln!("==> bench: a retention run under load (postgres)");
        // A lease left by a scenario's instance, stopped while its own run (with nothing to
        // remove) had not yet ended, would make both instances below skip the job.
        super::service::psql(
            &dataset.store.database_url,
            "DELETE FROM job_leases WHERE job = 'retention'",
        )?;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let serving = self
            .start_on(&dataset.store, "history-serving", &twilio, &[])
            .await?;
        // Its own retention run (nothing is past 90 days) is over before the load starts.
        let serving_log = self.bench_dir.join("postgres-history-serving.log");
        wait_for_retention(&serving_log, Duration::from_secs(120)).await?;

        let rate = if self.plan.quick {
            QUICK_RETENTION_LOAD_RATE
        } else {
            RETENTION_LOAD_RATE
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let load = {
            let target = serving.target.clone();
            tokio::spawn(async move {
                load::open_loop_until(
                    &target,
                    CONNECTIONS,
                    rate,
                    stopped,
                    Arc::new(message_call),
                    &format!("POST /v1/messages at {rate}/s during retention"),
                )
                .await
            })
        };
        // A moment of load before the run starts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let run_started = Instant::now();
        let overrides = [("RETENTION_DAYS", RETENTION_RUN_DAYS.to_string())];
        let retaining = self
            .start_on(&dataset.store, "history-retention", &twilio, &overrides)
            .await;
        let patience = Duration::from_secs(if self.plan.quick { 60 } else { 900 });
        let finished = match &retaining {
            Ok(_) => {
                let log = self.bench_dir.join("postgres-history-retention.log");
                wait_for_retention(&log, patience).await
            }
            Err(_) => Err(anyhow::anyhow!("the retaining instance did not start")),
        };
        let run_took = run_started.elapsed();
        let _ = stop.send(true);
        let outcome = load.await?;
        let retaining = retaining?;
        let removed = finished.context("the retention run did not finish")?;
        outcome.check("requests during the retention run")?;
        eprintln!(
            "    retention removed {} messages and {} verifications in {:.1} s",
            removed.messages,
            removed.verifications,
            run_took.as_secs_f64()
        );
        let method = format!(
            "RETENTION_DAYS={RETENTION_RUN_DAYS} on the {SPAN_DAYS} days of history: a second instance runs the job at its start (whole weeks detached and dropped, the rest in batches) while the first serves POST /v1/messages open loop at {rate}/s over {CONNECTIONS} connections, from a second before the run until it ends ({:.1} s: {} messages and {} verifications removed); latency from each request's planned start",
            run_took.as_secs_f64(),
            removed.messages,
            removed.verifications
        );
        self.figure(
            10,
            "retention run over a month of history, p99 API latency",
            store,
            (outcome.latency_ms(0.99), "ms"),
            Goal::AtMost(100.0),
            method.clone(),
        );
        self.figure(
            10,
            "retention run over a month of history, slowest request",
            store,
            (outcome.latency_ms(1.0), "ms"),
            Goal::None,
            method.clone(),
        );
        self.figure(
            10,
            "retention run over a month of history, its duration",
            store,
            (run_took.as_secs_f64(), "s"),
            Goal::None,
            method,
        );
        super::ensure_twilio_content(&twilio)?;
        retaining.stop().await?;
        serving.stop().await
    }
}

/// Leaves the history's database as the next scenario on it expects. Another scenario's
/// verification to the same number would reuse it (and wait for its resend interval): what each
/// leaves pending is expired, as its lifetime would. So is the queue it leaves (its instance
/// stopped long before the backlog was sent), which the next scenario's instance would
/// otherwise send while it is measured, where the empty database's scenarios each start on an
/// empty queue.
fn settle_history(url: &str) -> anyhow::Result<()> {
    super::service::psql(
        url,
        "UPDATE verifications SET status = 'expired', updated_at = now() \
         WHERE status = 'pending' AND created_at > now() - interval '1 hour'; \
         UPDATE messages SET status = 'expired', body = '', locked_until = NULL, \
             claim_token = NULL, updated_at = now() \
         WHERE status IN ('queued', 'sending')",
    )?;
    // Every message a scenario sent left a dead entry in the week's claim-order index (its
    // queued version), which each claim of the next scenario's instance would walk past until
    // autovacuum came by: the previous scenario's garbage, which the empty database's fresh
    // databases never carry. Vacuumed as a resting instance's would be.
    let vacuum = std::time::Instant::now();
    super::service::psql(url, "VACUUM (ANALYZE) messages, verifications")?;
    eprintln!(
        "    history's messages and verifications vacuumed after the scenario in {:.1} s",
        vacuum.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The dataset is raw rows, and the reports read the hourly rollups for every folded hour: the
/// service's own fold (`sms-notify report fold`, which returns once the watermark has caught
/// up) builds them, timed.
fn build_rollups(database_url: &str, release: bool) -> anyhow::Result<Duration> {
    let cli = super::service::build_binary("cli", "sms-notify", release)?;
    eprintln!("    folding the hourly rollups (sms-notify report fold)");
    let started = Instant::now();
    let output = Command::new(cli)
        .args(["report", "fold", "--settle", "1m", "--json"])
        .env("DATABASE_URL", database_url)
        // The same pepper as the service's: the CLI refuses PostgreSQL without one.
        .env("CODE_PEPPER", super::service::CODE_PEPPER)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run sms-notify report fold")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!("sms-notify report fold failed ({})", output.status);
    }
    eprintln!(
        "    folded in {:.1} s: {}",
        took.as_secs_f64(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(took)
}

const DAY_MS: i64 = 86_400_000;

/// One step of the dataset: its group, lane, label and statement.
struct Step {
    group: u32,
    lane: u32,
    label: String,
    sql: String,
}

/// `history.sql` cut into its steps, placeholders replaced.
fn dataset_steps(size: Size, start_ms: i64, end_ms: i64) -> anyhow::Result<Vec<Step>> {
    let resent = size.verifications / 10;
    let Some(plain) = size.messages.checked_sub(size.verifications + resent) else {
        bail!("the dataset's messages must outnumber its verifications' codes");
    };
    let values = [
        ("{V}", size.verifications.to_string()),
        ("{R}", resent.to_string()),
        ("{P}", plain.to_string()),
        ("{START_MS}", start_ms.to_string()),
        ("{SPAN_MS}", (end_ms - start_ms).to_string()),
        ("{RECENT_MS}", (end_ms - 10 * 60 * 1000).to_string()),
        ("{BODIES_MS}", (end_ms - 72 * 3_600_000).to_string()),
        ("{UNCONFIRMED_MS}", (end_ms - 3 * DAY_MS).to_string()),
    ];
    let mut sql = DATASET_SQL.to_owned();
    for (name, value) in values {
        sql = sql.replace(name, &value);
    }
    let mut steps: Vec<Step> = Vec::new();
    for line in sql.lines() {
        let header = line
            .strip_prefix("-- step ")
            .filter(|header| header.starts_with(|c: char| c.is_ascii_digit()));
        if let Some(header) = header {
            let (position, label) = header
                .split_once(": ")
                .context("a step header without its label")?;
            let (group, lane) = position
                .split_once('.')
                .context("a step header without its lane")?;
            steps.push(Step {
                group: group.parse()?,
                lane: lane.parse()?,
                label: label.to_owned(),
                sql: String::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.sql.push_str(line);
            step.sql.push('\n');
        }
    }
    Ok(steps)
}

/// Runs the steps group after group, each group's lanes at once; answers how long the
/// generation took and how long the settling group did.
fn run_steps(url: &str, steps: &[Step]) -> anyhow::Result<(Duration, Duration)> {
    let mut groups: BTreeMap<u32, BTreeMap<u32, Vec<&Step>>> = BTreeMap::new();
    for step in steps {
        groups
            .entry(step.group)
            .or_default()
            .entry(step.lane)
            .or_default()
            .push(step);
    }
    let (mut generated, mut settled) = (Duration::ZERO, Duration::ZERO);
    for (group, lanes) in groups {
        let started = Instant::now();
        std::thread::scope(|scope| {
            let lanes: Vec<_> = lanes
                .values()
                .map(|lane| {
                    scope.spawn(move || {
                        for step in lane {
                            let started = Instant::now();
                            psql_script(url, &step.sql)
                                .with_context(|| format!("the dataset's step {}", step.label))?;
                            eprintln!(
                                "    dataset: {} in {:.1} s",
                                step.label,
                                started.elapsed().as_secs_f64()
                            );
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .collect();
            lanes.into_iter().try_for_each(|lane| {
                lane.join()
                    .map_err(|_| anyhow::anyhow!("a dataset lane panicked"))?
            })
        })?;
        if group == SETTLING_GROUP {
            settled += started.elapsed();
        } else {
            generated += started.elapsed();
        }
    }
    Ok((generated, settled))
}

/// Runs `sql` in one session, with what a bulk load wants of it: no wait for each commit's
/// flush, memory enough to sort an index in.
fn psql_script(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([
            url,
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env(
            "PGOPTIONS",
            "-c synchronous_commit=off -c maintenance_work_mem=512MB",
        )
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Ends every other session on the dataset's database and waits until they are gone, so that
/// it can be dropped: a report's query the service gave up on runs on until cancelled, and a
/// cancel takes a while to be noticed on a busy machine.
async fn quiesce(url: &str) -> anyhow::Result<()> {
    for _ in 0..60 {
        let left = psql_value(
            url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )?;
        if left == "0" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("sessions on the history's database did not end")
}

/// The one value `query` answers.
pub(super) fn psql_value(url: &str, query: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args([
            url,
            "--no-psqlrc",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            query,
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql failed to run `{query}`: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The median time of `runs` requests of `path`, in milliseconds, and how the
/// service refused any it gave up on (its request timeout); a refusal of the request itself
/// (4xx but a timeout) fails the figure.
async fn time_report(
    admin: &Target,
    database_url: &str,
    path: &str,
    runs: usize,
) -> anyhow::Result<(f64, Option<String>)> {
    let mut connection = load::Connection::new(admin);
    let mut times = Vec::new();
    let mut refused = None;
    for _ in 0..runs {
        let started = Instant::now();
        let (status, body) = connection.get(path).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if status.is_client_error() && status != hyper::StatusCode::REQUEST_TIMEOUT {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if !status.is_success() {
            refused.get_or_insert_with(|| format!("answered {status}"));
            // The service gave up, PostgreSQL did not: the query would run on into the next
            // request and the next figures.
            super::service::psql(
                database_url,
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND state = 'active'",
            )?;
        }
    }
    Ok((load::quantile(&times, 0.5), refused))
}

/// `ms` since the epoch as RFC 3339 in UTC, to the second (no `+` to escape in a query).
fn rfc3339(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// What a retention run removed, as its log line says.
pub(super) struct Retained {
    messages: u64,
    verifications: u64,
}

/// Waits until the service logging to `log` says its retention run finished, and answers what
/// it removed. The log is read as it grows (the load beside it writes a line per message).
pub(super) async fn wait_for_retention(log: &Path, patience: Duration) -> anyhow::Result<Retained> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let deadline = Instant::now() + patience;
    let mut read = 0;
    let mut pending = String::new();
    loop {
        if let Ok(mut file) = std::fs::File::open(log) {
            file.seek(SeekFrom::Start(read))?;
            let mut bytes = Vec::new();
            read += file.read_to_end(&mut bytes)? as u64;
            pending.push_str(&String::from_utf8_lossy(&bytes));
            let complete = pending.rfind('\n').map_or(0, |end| end + 1);
            let lines: String = pending.drain(..complete).collect();
            let finished = lines
                .lines()
                .filter(|line| line.contains("retention run finished"))
                .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
            if let Some(line) = finished {
                return Ok(Retained {
                    messages: line["messages"].as_u64().unwrap_or_default(),
                    verifications: line["verifications"].as_u64().unwrap_or_default(),
                });
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no retention run finished within {patience:?}; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One of the history comparison's pairs: a figure's value on an empty database and with
/// history, each the mean of its side's runs.
struct Pair {
    label: &'static str,
    figure: u8,
    empty: Side,
    history: Side,
    unit: &'static str,
    higher_is_better: bool,
}

/// The runs of one side of a pair.
struct Side(Vec<f64>);

impl Side {
    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len().max(1) as f64
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, value) in self.0.iter().enumerate() {
            write!(f, "{}{value:.1}", if n == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

impl Pair {
    fn rates(
        label: &'static str,
        [empty, history]: &[Runs; 2],
        figure: u8,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::new(label, empty, history, figure, name, true)
    }

    fn times(
        label: &'static str,
        [empty, history]: &[Runs; 2],
        figure: u8,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::new(label, empty, history, figure, name, false)
    }

    fn new(
        label: &'static str,
        empty: &Runs,
        history: &Runs,
        figure: u8,
        name: &str,
        higher_is_better: bool,
    ) -> anyhow::Result<Self> {
        let mut unit = "";
        let mut side = |runs: &Runs| -> anyhow::Result<Side> {
            let values = runs.iter().map(|figures| {
                let taken = figures
                    .iter()
                    .find(|taken| taken.number == figure && taken.name.starts_with(name))
                    .with_context(|| {
                        format!("figure {figure}'s scenario measured no \"{name}\"")
                    })?;
                unit = taken.unit;
                Ok(taken.value)
            });
            values.collect::<anyhow::Result<_>>().map(Side)
        };
        let (empty, history) = (side(empty)?, side(history)?);
        Ok(Self {
            label,
            figure,
            empty,
            history,
            unit,
            higher_is_better,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_of_the_dataset_has_a_group_a_lane_and_its_placeholders_filled() {
        let steps = dataset_steps(Size::of(true), 1_000_000, 2_000_000).unwrap();
        assert!(steps.iter().any(|step| step.group == SETTLING_GROUP));
        for step in &steps {
            assert!(!step.sql.trim().is_empty(), "{} is empty", step.label);
            assert!(
                !step.sql.contains("{V}") && !step.sql.contains("_MS}"),
                "{}",
                step.label
            );
        }
    }

    #[test]
    fn report_ranges_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_540_182_292), "2026-12-06T06:56:22Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn each_side_of_a_pair_is_the_mean_of_its_runs_and_a_run_without_the_figure_is_an_error() {
        let run = |value: f64| {
            vec![Figure {
                number: 1,
                name: "accepted messages (POST /v1/messages, template)".to_owned(),
                store: StoreKind::Postgres,
                value,
                unit: "/s",
                goal: Goal::None,
                load: 0.0,
                method: String::new(),
            }]
        };
        let runs = [vec![run(100.0), run(80.0)], vec![run(60.0), run(90.0)]];
        let pair = Pair::rates("accepted", &runs, 1, "accepted messages").unwrap();
        assert_eq!((pair.empty.mean(), pair.history.mean()), (90.0, 75.0));
        assert_eq!(
            (pair.unit, pair.empty.to_string()),
            ("/s", "100.0, 80.0".to_owned())
        );
        assert!(Pair::rates("checks", &runs, 3, "checks").is_err());
        let missing = [vec![run(100.0)], vec![run(60.0), Vec::new()]];
        assert!(Pair::rates("accepted", &missing, 1, "accepted messages").is_err());
    }
}
