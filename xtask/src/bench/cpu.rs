//! CPU time the service and PostgreSQL spend within a figure's measurement window, per request:
//! a figure that moves less with the machine's load than a rate does, so that a change's effect
//! shows when the rates' spread hides it.

use anyhow::Context as _;
use tokio::task::JoinHandle;

use super::load::{Outcome, Schedule};

/// Linux reports process CPU time in clock ticks of 1/100 s on every architecture it runs
/// on (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
struct Ticks {
    /// Every service process's together.
    service: u64,
    /// `None` when no PostgreSQL process is visible (a server elsewhere).
    postgres: Option<u64>,
    /// The whole machine's: idle (iowait included) and all.
    idle: u64,
    total: u64,
}

/// CPU seconds used within the window.
pub struct CpuUse {
    service: f64,
    postgres: Option<f64>,
    /// The machine's idle share of the window, 0 to 1: a closed loop that leaves the machine
    /// idle measures its connections' patience, not the service's capacity.
    idle: f64,
}

/// CPU times read at a start, for [`Meter::stop`] to subtract: a window that ends at an event
/// (the last send arriving) rather than at a planned time.
pub struct Meter {
    service_pids: Vec<u32>,
    database: Option<String>,
    start: Ticks,
}

impl Meter {
    pub fn start(service_pid: u32) -> anyhow::Result<Self> {
        Self::start_all(&[service_pid])
    }

    /// The service's CPU is that of every process in `service_pids` together: instances that
    /// share one database.
    pub fn start_all(service_pids: &[u32]) -> anyhow::Result<Self> {
        Ok(Self {
            service_pids: service_pids.to_vec(),
            database: None,
            start: ticks(service_pids, None)?,
        })
    }

    /// As [`Meter::start_all`], PostgreSQL's CPU being that of the server's own processes and
    /// of the sessions on `database` only: on a server others use too, their sessions are not
    /// the scenario's cost.
    pub fn start_on(service_pids: &[u32], database: &str) -> anyhow::Result<Self> {
        Ok(Self {
            service_pids: service_pids.to_vec(),
            database: Some(database.to_owned()),
            start: ticks(service_pids, Some(database))?,
        })
    }

    pub fn stop(self) -> anyhow::Result<CpuUse> {
        let end = ticks(&self.service_pids, self.database.as_deref())?;
        Ok(CpuUse::between(self.start, end))
    }
}

impl CpuUse {
    /// Samples CPU times when `schedule`'s warm-up ends and again when its measurement does:
    /// start it together with the load that follows the same schedule.
    pub fn measure(service_pid: u32, schedule: Schedule) -> JoinHandle<anyhow::Result<Self>> {
        tokio::spawn(async move {
            tokio::time::sleep(schedule.warm_up).await;
            let meter = Meter::start(service_pid)?;
            tokio::time::sleep(schedule.measure).await;
            meter.stop()
        })
    }

    fn between(start: Ticks, end: Ticks) -> Self {
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / TICKS_PER_SECOND;
        Self {
            service: seconds(start.service, end.service),
            postgres: start.postgres.zip(end.postgres).map(|(a, b)| seconds(a, b)),
            idle: end.idle.saturating_sub(start.idle) as f64
                / end.total.saturating_sub(start.total).max(1) as f64,
        }
    }

    /// Seconds of the service's CPU, then PostgreSQL's when it runs here.
    pub fn seconds(&self) -> (f64, Option<f64>) {
        (self.service, self.postgres)
    }

    /// Milliseconds of the service's CPU per 1,000 `units`, then microseconds of PostgreSQL's
    /// per unit when it runs here.
    pub fn per_thousand(&self, units: u64) -> (f64, Option<f64>) {
        let units = units.max(1) as f64;
        (
            self.service * 1e6 / units,
            self.postgres.map(|seconds| seconds * 1e6 / units),
        )
    }

    /// Microseconds of CPU per request that succeeded in the window: the service's, then
    /// PostgreSQL's (all its processes, background ones included) when it runs here.
    pub fn per_request(&self, outcome: &Outcome) -> (f64, Option<f64>) {
        let requests = outcome.succeeded.max(1) as f64;
        let micros = |seconds: f64| seconds * 1e6 / requests;
        (micros(self.service), self.postgres.map(micros))
    }

    /// The machine's idle share of the window, in percent.
    pub fn idle_percent(&self) -> f64 {
        self.idle * 100.0
    }
}

/// Waits for the measurement started with the load; the load's own window is over by then.
pub async fn finished(meter: JoinHandle<anyhow::Result<CpuUse>>) -> anyhow::Result<CpuUse> {
    meter.await.context("the CPU meter panicked")?
}

fn ticks(service_pids: &[u32], database: Option<&str>) -> anyhow::Result<Ticks> {
    let mut service = 0;
    for pid in service_pids {
        service += process_ticks(*pid)
            .map(|(_, ticks)| ticks)
            .context("cannot read the service's CPU time from /proc (Linux only)")?;
    }
    let mut postgres = None;
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Some(pid) = entry
            .ok()
            .and_then(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go while /proc is read: one that has gone counts nothing.
        if let Some(("postgres", ticks)) = process_ticks(pid)
            .as_ref()
            .map(|(name, ticks)| (name.as_str(), *ticks))
        {
            if database.is_none_or(|database| serves(pid, database)) {
                *postgres.get_or_insert(0) += ticks;
            }
        }
    }
    let (idle, total) =
        machine_ticks().context("cannot read the machine's CPU time from /proc/stat")?;
    Ok(Ticks {
        service,
        postgres,
        idle,
        total,
    })
}

/// Whether the PostgreSQL process `pid` works for `database`: a session on it, or one of the
/// server's own processes (checkpointer, WAL writer, ...), which every database's writes
/// keep busy. A session shows `USER DATABASE HOST(PORT) STATE` (or `[local]`) in its title.
fn serves(pid: u32, database: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|title| title_serves(&String::from_utf8_lossy(&title), database))
}

fn title_serves(title: &str, database: &str) -> bool {
    let session = title.contains('(') || title.contains("[local]");
    title.split_whitespace().any(|word| word == database) || !session
}

/// The machine's idle and total ticks, every core together: `/proc/stat`'s first line is
/// `cpu user nice system idle iowait irq softirq steal ...`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let idle = fields.get(3)? + fields.get(4)?;
    Some((idle, fields.iter().sum()))
}

/// The process's name and its user plus system CPU time, in ticks.
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state ...`: the name may hold spaces and parentheses, so it ends at the last
    // `)`; utime and stime are the 12th and 13th fields after it.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((name, user + system))
}

#[cfg(test)]
mod tests {
    use super::title_serves;

    #[test]
    fn only_the_server_s_own_processes_and_the_database_s_sessions_count() {
        let ours = "sms_notify_bench_1_capacity_one";
        assert!(title_serves("postgres: 15/main: walwriter", ours));
        assert!(title_serves(
            "postgres: 15/main: postgres sms_notify_bench_1_capacity_one 127.0.0.1(40112) idle",
            ours
        ));
        assert!(!title_serves(
            "postgres: 15/main: postgres test_db_42 127.0.0.1(40114) INSERT",
            ours
        ));
        assert!(!title_serves(
            "postgres: 15/main: postgres sms_notify_bench_1_capacity_one_x [local] idle",
            ours
        ));
    }
}
