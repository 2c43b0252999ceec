//! `cargo xtask bench --soak MINUTES`: the service under a steady load an operator would give
//! it (1,000 messages/s over HTTP, Twilio answering in 50 ms, PostgreSQL, JSON logs) for a long
//! while, to tell whether its memory settles: the resident set, the p99 latency, the errors and
//! the messages not yet at Twilio every 30 s, then the resident set's trend over the last third
//! of the run and the messages that never reached Twilio. Written to `target/bench/soak.md`.
//! The server is `DATABASE_URL`'s, its buffers named in the report (the p99 over a long run
//! follows whether the hot partition's indexes fit in them: docs/performance.md). On a server
//! without autovacuum it runs the vacuums autovacuum would: a table's once its dead rows pass
//! autovacuum's default threshold, throttled as autovacuum's are, in the background.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::fake_twilio::FakeTwilio;
use super::history::psql_value;
use super::load::{self, Schedule};
use super::service::{FreshStore, StoreKind};
use super::{mebibytes, message_call, Bench};

const RATE: f64 = 1_000.0;
const TWILIO_LATENCY: Duration = Duration::from_millis(50);
const PERIOD: Duration = Duration::from_secs(30);
/// How long the end of the run waits for the messages still queued to reach Twilio.
const DRAIN_PATIENCE: Duration = Duration::from_secs(60);

/// One period's figures.
struct Sample {
    at_seconds: f64,
    rss_bytes: u64,
    p99_ms: f64,
    succeeded: u64,
    failed: u64,
    /// Accepted so far and not yet at Twilio.
    behind: u64,
}

impl Bench {
    pub(super) async fn soak(&mut self, minutes: u32) -> anyhow::Result<String> {
        let store = StoreKind::Postgres;
        let twilio = FakeTwilio::start(TWILIO_LATENCY, None).await?;
        let fresh = FreshStore::create(store, "soak", &self.bench_dir)?;
        let service = self.start_on(&fresh, "soak", &twilio, &[]).await?;
        // Sent messages leave dead rows behind them (each is updated twice), which the claim
        // and the queue's indexes walk until a vacuum; a server without autovacuum (this
        // machine's CI configuration) gets the vacuums autovacuum would run.
        let shared_buffers = psql_value(&fresh.database_url, "SHOW shared_buffers")?;
        let mut autovacuum = (psql_value(&fresh.database_url, "SHOW autovacuum")? == "off")
            .then(|| Autovacuum::new(&fresh.database_url));
        if autovacuum.is_some() {
            eprintln!("    autovacuum is off on this server: the soak runs its vacuums");
        }
        let started = std::time::Instant::now();
        let idle_rss = service.resident_set_bytes()?;
        eprintln!(
            "==> soak: {RATE:.0} messages/s for {minutes} min, Twilio {} ms; idle RSS {:.1} MiB",
            TWILIO_LATENCY.as_millis(),
            mebibytes(idle_rss)
        );
        let periods = (u64::from(minutes) * 60).div_ceil(PERIOD.as_secs());
        let per_period = (RATE * PERIOD.as_secs_f64()) as u64;
        let mut samples = Vec::new();
        let mut accepted = 0;
        for period in 0..periods {
            let offset = period * per_period;
            if let Some(autovacuum) = &mut autovacuum {
                autovacuum.start_when_due()?;
            }
            let outcome = load::open_loop(
                &service.target,
                super::CONNECTIONS,
                RATE,
                Schedule {
                    warm_up: Duration::ZERO,
                    measure: PERIOD,
                },
                Arc::new(move |n| message_call(offset + n)),
                &format!("soak period {}/{periods}", period + 1),
            )
            .await;
            accepted += outcome.succeeded;
            let sample = Sample {
                at_seconds: started.elapsed().as_secs_f64(),
                rss_bytes: service.resident_set_bytes()?,
                p99_ms: outcome.latency_ms(0.99),
                succeeded: outcome.succeeded,
                failed: outcome.failed,
                behind: accepted.saturating_sub(twilio.distinct_numbers()),
            };
            eprintln!(
                "    {:>5.0} s: RSS {:.1} MiB, p99 {:.1} ms, {} accepted, {} errors{}, {} not yet at Twilio",
                sample.at_seconds,
                mebibytes(sample.rss_bytes),
                sample.p99_ms,
                sample.succeeded,
                sample.failed,
                outcome
                    .first_failure
                    .as_deref()
                    .map(|first| format!(" (first: {first})"))
                    .unwrap_or_default(),
                sample.behind
            );
            samples.push(sample);
        }
        let drain_end = std::time::Instant::now() + DRAIN_PATIENCE;
        while twilio.distinct_numbers() < accepted && std::time::Instant::now() < drain_end {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lost = accepted.saturating_sub(twilio.distinct_numbers());
        let end_rss = service.resident_set_bytes()?;
        service.stop().await?;
        let vacuums = match autovacuum {
            Some(autovacuum) => Some(autovacuum.finish().await?),
            None => None,
        };
        drop(fresh);
        let build = if self.plan.release {
            "release"
        } else {
            "debug"
        };
        let method = format!(
            "{build} build; the server's shared_buffers {shared_buffers}{}",
            vacuums
                .map(|vacuums| format!(
                    "; autovacuum off on the server, so the soak ran its {vacuums} vacuums (a table once its dead rows passed 50 + 20% of its rows, throttled at 200 per 2 ms)"
                ))
                .unwrap_or_default()
        );
        Ok(summary(minutes, &method, idle_rss, end_rss, &samples, lost))
    }
}

/// What autovacuum would do on a server that has it off, with its default settings: vacuum
/// (and analyze) each table whose dead rows pass 50 plus a fifth of its rows, one run at a
/// time, throttled by its cost delay, in the background.
struct Autovacuum {
    url: String,
    running: Option<tokio::task::JoinHandle<anyhow::Result<String>>>,
    runs: u32,
}

impl Autovacuum {
    fn new(database_url: &str) -> Self {
        let separator = if database_url.contains('?') { '&' } else { '?' };
        Self {
            url: format!(
                "{database_url}{separator}options=-c%20vacuum_cost_delay%3D2ms%20-c%20vacuum_cost_limit%3D200"
            ),
            running: None,
            runs: 0,
        }
    }

    /// Starts a vacuum of the tables past the threshold, unless one is still running.
    fn start_when_due(&mut self) -> anyhow::Result<()> {
        if self
            .running
            .as_ref()
            .is_some_and(|running| !running.is_finished())
        {
            return Ok(());
        }
        let tables = psql_value(
            &self.url,
            "SELECT string_agg(format('%I', s.relname), ', ') \
             FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid \
             WHERE s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0)",
        )?;
        if tables.is_empty() {
            return Ok(());
        }
        let url = self.url.clone();
        self.runs += 1;
        self.running = Some(tokio::task::spawn_blocking(move || {
            psql_value(&url, &format!("VACUUM (ANALYZE) {tables}"))
        }));
        Ok(())
    }

    /// Waits for the vacuum still running: how many were run.
    async fn finish(self) -> anyhow::Result<u32> {
        if let Some(running) = self.running {
            running.await.context("the vacuum did not finish")??;
        }
        Ok(self.runs)
    }
}

fn summary(
    minutes: u32,
    method: &str,
    idle_rss: u64,
    end_rss: u64,
    samples: &[Sample],
    lost: u64,
) -> String {
    let mut text = format!(
        "# Soak: {RATE:.0} messages/s for {minutes} min\n\nPOST /v1/messages open loop over {} connections, Twilio answering in {} ms, PostgreSQL, JSON logs at info, {method}; idle RSS {:.1} MiB.\n\n| time (s) | RSS (MiB) | p99 (ms) | accepted | errors | not yet at Twilio |\n|---:|---:|---:|---:|---:|---:|\n",
        super::CONNECTIONS,
        TWILIO_LATENCY.as_millis(),
        mebibytes(idle_rss)
    );
    for sample in samples {
        let _ = writeln!(
            text,
            "| {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            sample.at_seconds,
            mebibytes(sample.rss_bytes),
            sample.p99_ms,
            sample.succeeded,
            sample.failed,
            sample.behind
        );
    }
    // The last third: from the sample nearest two thirds of the run to the end. Its trend is
    // judged, not its two ends: the resident set swings by a megabyte or two between samples
    // (the allocator hands pages back some seconds after a burst), so one sample at either end
    // can make or hide a megabyte of "growth".
    let last_third = &samples[(samples.len() * 2 / 3).saturating_sub(1)..];
    let third = last_third
        .first()
        .map_or(idle_rss, |sample| sample.rss_bytes);
    let errors: u64 = samples.iter().map(|sample| sample.failed).sum();
    let p99 = |sample: Option<&Sample>| sample.map_or(f64::NAN, |sample| sample.p99_ms);
    let points: Vec<(f64, f64)> = last_third
        .iter()
        .map(|sample| (sample.at_seconds, mebibytes(sample.rss_bytes)))
        .collect();
    let span = points
        .last()
        .zip(points.first())
        .map_or(0.0, |(last, first)| last.0 - first.0);
    let _ = write!(
        text,
        "\nRSS trend over the last third (least squares over its {} samples, {:.0} min): {:+.2} MiB (goal: under 1 MiB); its two ends {:+.2} MiB; RSS at the end {:.1} MiB; p99 first/last period {:.1}/{:.1} ms; errors {errors}; messages accepted and not at Twilio {} s after the load ended (lost, unless the service was still behind) {lost}.\n",
        points.len(),
        span / 60.0,
        slope(&points) * span,
        (end_rss as f64 - third as f64) / (1024.0 * 1024.0),
        mebibytes(end_rss),
        p99(samples.first()),
        p99(samples.last()),
        DRAIN_PATIENCE.as_secs(),
    );
    text
}

/// The least-squares slope of `points` (y per x), 0 for fewer than two distinct x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|point| point.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|point| point.1).sum::<f64>() / n;
    let (covariance, variance) = points.iter().fold((0.0, 0.0), |(c, v), (x, y)| {
        (
            c + (x - mean_x) * (y - mean_y),
            v + (x - mean_x) * (x - mean_x),
        )
    });
    if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    }
}

/// Writes the soak's report beside the figures' and prints it.
pub(super) fn write(bench_dir: &std::path::Path, report: &str) -> anyhow::Result<()> {
    let path = bench_dir.join("soak.md");
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{report}");
    eprintln!("    written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn a_series_swinging_around_a_level_has_no_trend_and_a_rising_one_has_its_rise() {
        let swinging = [
            (0.0, 44.0),
            (30.0, 42.0),
            (60.0, 46.0),
            (90.0, 42.0),
            (120.0, 44.0),
        ];
        assert!(slope(&swinging).abs() < 1e-9);
        let rising = [(0.0, 40.0), (30.0, 41.5), (60.0, 41.0), (90.0, 42.5)];
        assert!((slope(&rising) * 90.0 - 2.1).abs() < 1e-9);
        assert_eq!(slope(&[(5.0, 40.0)]), 0.0);
    }
}
