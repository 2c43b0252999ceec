//! The service under test: its binary, a fresh store for each scenario, and the running process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::time::Instant;

use super::load::{Connection, Target};

pub const API_KEY: &str = "bench-key-0123456789abcdef";
pub(super) const CODE_PEPPER: &str = "bench-pepper-0123456789abcdef0123456789";
const START_PATIENCE: Duration = Duration::from_secs(180);
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// A command line to run the service under, e.g. `valgrind --tool=callgrind`: a profile of
/// one figure's load (with callgrind, counted from the moment the service answers).
pub const PROFILER_VARIABLE: &str = "SMS_NOTIFY_BENCH_PROFILER";

/// Builds `sms-notify-server` (release, or the debug build the tests use) and returns its path.
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    build_binary("app", "sms-notify-server", release)
}

/// One binary of the workspace, built as the service is, and its path.
pub fn build_binary(package: &str, binary: &str, release: bool) -> anyhow::Result<PathBuf> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["build", "--package", package, "--bin", binary]);
    if release {
        command.arg("--release");
    }
    let output = command
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(crate::workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building {binary} failed ({}), see above", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|message| message["target"]["name"] == binary)
        .and_then(|artifact| artifact["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build did not report the {binary} executable"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Sqlite => "sqlite",
        }
    }
}

/// An empty store for one scenario, removed when dropped: a PostgreSQL database created next to
/// the one `DATABASE_URL` names (with `psql`), or an SQLite file under `target/bench`.
pub struct FreshStore {
    pub kind: StoreKind,
    pub database_url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres {
        admin_url: String,
        name: String,
    },
    Sqlite {
        dir: PathBuf,
    },
    /// A store another owner removes (the history figures' shared database).
    Keep,
}

impl FreshStore {
    /// The PostgreSQL database's name, the last part of its URL.
    pub fn database_name(&self) -> Option<String> {
        let url = url::Url::parse(&self.database_url).ok()?;
        let name = url.path().trim_start_matches('/');
        (self.kind == StoreKind::Postgres && !name.is_empty()).then(|| name.to_owned())
    }

    /// A store that outlives the scenario run on it: the history figures' database, which
    /// every scenario of the history comparison shares.
    pub fn shared(kind: StoreKind, database_url: &str) -> Self {
        Self {
            kind,
            database_url: database_url.to_owned(),
            cleanup: Cleanup::Keep,
        }
    }

    /// Leaves the store in place when it is dropped (a dataset kept to be examined by hand).
    pub fn keep(&mut self) {
        self.cleanup = Cleanup::Keep;
    }

    pub fn create(kind: StoreKind, scenario: &str, bench_dir: &Path) -> anyhow::Result<Self> {
        let name = format!("sms_notify_bench_{}_{scenario}", std::process::id());
        match kind {
            StoreKind::Postgres => {
                let admin_url = crate::postgres::database_url();
                let mut url = url::Url::parse(&admin_url).context("DATABASE_URL is not a URL")?;
                url.set_path(&name);
                psql(
                    &admin_url,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )?;
                psql(&admin_url, &format!("CREATE DATABASE {name}"))?;
                Ok(Self {
                    kind,
                    database_url: url.to_string(),
                    cleanup: Cleanup::Postgres { admin_url, name },
                })
            }
            StoreKind::Sqlite => {
                let dir = bench_dir.join(&name);
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(Self {
                    kind,
                    database_url: format!("sqlite://{}", dir.join("sms-notify.sqlite").display()),
                    cleanup: Cleanup::Sqlite { dir },
                })
            }
        }
    }
}

impl Drop for FreshStore {
    fn drop(&mut self) {
        let result = match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => psql(
                admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ),
            Cleanup::Sqlite { dir } => std::fs::remove_dir_all(dir).map_err(Into::into),
            Cleanup::Keep => Ok(()),
        };
        if let Err(error) = result {
            eprintln!("warning: cannot remove a benchmark store: {error:#}");
        }
    }
}

/// The machine's single-core speed as PostgreSQL sees it: the best of three runs of a fixed
/// CPU-bound query. The figures of two runs compare only on machines of similar speed, and
/// this is how a report says which it ran on (lower is faster).
pub fn cpu_reference() -> anyhow::Result<Duration> {
    let url = crate::postgres::database_url();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        psql(
            &url,
            "SELECT count(*) FROM generate_series(1, 5000000) AS g WHERE g % 7 = 0",
        )?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}

pub fn psql(url: &str, statement: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args([
            url,
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (it comes with PostgreSQL's client tools)")?;
    if !output.status.success() {
        bail!(
            "psql failed to run `{statement}`: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A running `sms-notify-server`, killed if dropped before [`Service::stop`].
pub struct Service {
    child: tokio::process::Child,
    pub target: Target,
    log: PathBuf,
}

impl Service {
    /// Starts the service with the benchmark's base configuration and `overrides`, logging to
    /// `log`, and waits until it answers `/healthz`.
    pub async fn start(
        binary: &Path,
        database_url: &str,
        twilio_base_url: &str,
        overrides: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("no free port")?
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        // A profiler to run the service under (`valgrind --tool=callgrind ...`), when asked.
        let wrapper: Vec<String> = std::env::var(PROFILER_VARIABLE)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => tokio::process::Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BIND_ADDR", address.to_string())
            .env("DATABASE_URL", database_url)
            .env("API_KEYS", format!("bench:{API_KEY}"))
            .env("CODE_PEPPER", CODE_PEPPER)
            .env("TWILIO_ACCOUNT_SID", super::fake_twilio::ACCOUNT_SID)
            .env("TWILIO_AUTH_TOKEN", super::fake_twilio::AUTH_TOKEN)
            .env("TWILIO_PHONE_NUMBER", super::fake_twilio::FROM)
            .env("TWILIO_API_BASE_URL", twilio_base_url)
            // As in production: JSON logs at `info`, to a file.
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(overrides.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut service = Self {
            child,
            target: Target {
                address,
                api_key: API_KEY.into(),
            },
            log: log.to_owned(),
        };
        service.wait_until_healthy().await?;
        // Callgrind counts from here: the start (migrations, pools) is not the load's cost.
        if wrapper.iter().any(|arg| arg.contains("callgrind")) {
            let pid = service.pid()?.to_string();
            let zeroed = Command::new("callgrind_control")
                .args(["--zero", &pid])
                .stdout(Stdio::null())
                .status()
                .context("cannot run callgrind_control")?;
            if !zeroed.success() {
                bail!("callgrind_control could not zero the service's counts");
            }
        }
        Ok(service)
    }

    async fn wait_until_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the service exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            let mut connection = Connection::new(&self.target);
            if let Ok((status, _)) = connection.get("/healthz").await {
                if status.is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "the service did not answer /healthz; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the service has exited")
    }

    /// The process's resident set (VmRSS), in bytes.
    pub fn resident_set_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("cannot read the service's /proc status (Linux only)")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kilobytes| kilobytes * 1024)
            .context("no VmRSS in /proc status")
    }

    /// SIGTERM, and the clean exit the service promises.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        let signalled = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !signalled.success() {
            bail!("cannot signal the service");
        }
        let Ok(status) = tokio::time::timeout(STOP_PATIENCE, self.child.wait()).await else {
            bail!(
                "the service did not stop after SIGTERM; see {}",
                self.log.display()
            );
        };
        let status = status?;
        if !status.success() {
            bail!(
                "the service exited with {status}; see {}",
                self.log.display()
            );
        }
        Ok(())
    }
}
