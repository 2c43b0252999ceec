//! `cargo xtask api-fuzz`: Schemathesis against the served `/openapi.json`. The service runs as
//! `cargo run` would (embedded SQLite, console provider) on a free port with a throwaway API
//! key; Schemathesis generates requests from the description and fails on any 5xx, any
//! response that breaks its schema and any wrong content type.
//!
//! Schemathesis comes from PyPI into a virtualenv under `target/`, installed on first use.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

/// Pinned, so that its command line and checks stay what this file expects.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const CHECKS: &str = "not_a_server_error,response_schema_conformance,content_type_conformance";
/// Examples per operation when run by hand; `cargo xtask test` passes a smaller budget.
pub(crate) const DEFAULT_EXAMPLES: u32 = 100;
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

pub(crate) fn run(examples: u32) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let work = root.join("target").join("api-fuzz");
    let st = install_schemathesis(&work)?;
    build_server(&root)?;

    let data = work.join("data");
    // A fresh database each run: examples from an earlier run must not change this one's.
    let _ = std::fs::remove_dir_all(&data);
    let address = free_address()?;
    let key = throwaway_key("api-fuzz");
    let server = Server::start(&root, &data, address, &key, &[])?;
    server.wait_until_up()?;

    let status = Command::new(&st)
        .args(["run", &format!("http://{address}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &examples.to_string()])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report-dir", &work.join("report").display().to_string()])
        .current_dir(&work)
        .status()
        .context("could not start schemathesis")?;
    drop(server);
    if !status.success() {
        bail!("schemathesis found responses that break the API description ({status}), see above");
    }
    Ok(())
}

/// The `st` command of the virtualenv, installing it when missing.
fn install_schemathesis(work: &Path) -> anyhow::Result<PathBuf> {
    let venv = work.join("venv");
    let st = venv.join("bin").join("st");
    let pinned = venv.join(".installed");
    if st.is_file() && std::fs::read_to_string(&pinned).is_ok_and(|text| text == SCHEMATHESIS) {
        return Ok(st);
    }
    eprintln!("    installing {SCHEMATHESIS} into {}", venv.display());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let created = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .with_context(|| format!("could not run `{python}`: api-fuzz needs Python 3 with venv"))?;
    if !created.success() {
        bail!("`{python} -m venv` failed ({created}): api-fuzz needs Python 3 with venv");
    }
    let installed = Command::new(venv.join("bin").join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ])
        .status()
        .context("could not run pip in the virtualenv")?;
    if !installed.success() {
        bail!("`pip install {SCHEMATHESIS}` failed ({installed}), see above");
    }
    std::fs::write(&pinned, SCHEMATHESIS).context("could not record the installed version")?;
    Ok(st)
}

pub(crate) fn build_server(root: &Path) -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args([
            "build",
            "--quiet",
            "--package",
            "app",
            "--bin",
            "sms-notify-server",
        ])
        .current_dir(root)
        .status()
        .context("could not start cargo build")?;
    if !status.success() {
        bail!("building sms-notify-server failed ({status}), see above");
    }
    Ok(())
}

/// A port the OS says is free now. Another process could take it before the service binds;
/// then the service fails to start and says so.
pub(crate) fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    listener.local_addr().context("no free local port")
}

/// A key for this run only: it protects a service that lives for a minute on loopback.
pub(crate) fn throwaway_key(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{purpose}-{nanos:x}-{:x}", std::process::id())
}

/// The service under test, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    /// Started with only `data`'s database, `key` and `extra_env` configured.
    pub(crate) fn start(
        root: &Path,
        data: &Path,
        address: SocketAddr,
        key: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let binary = root.join("target").join("debug").join("sms-notify-server");
        let child = Command::new(&binary)
            // Only what this run configures: a developer's TWILIO_* or DATABASE_URL must not
            // make the fuzzer send real SMS or write to a real database.
            .env_clear()
            .env("BIND_ADDR", address.to_string())
            .env("API_KEYS", format!("fuzz:{key}"))
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", data.join("sms-notify.sqlite").display()),
            )
            .env("RUST_LOG", "warn")
            .envs(extra_env.iter().copied())
            .current_dir(root)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        Ok(Self { child, address })
    }

    pub(crate) fn wait_until_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP_PATIENCE;
        while Instant::now() < deadline {
            if healthz(self.address).unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the service did not answer /healthz on {} within {}s",
            self.address,
            STARTUP_PATIENCE.as_secs()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /healthz` answers 200, over a bare HTTP/1.0 exchange (xtask has no HTTP
/// client, and needs none for this).
fn healthz(address: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
}
