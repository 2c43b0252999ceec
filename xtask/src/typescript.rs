//! `cargo xtask typescript`: the TypeScript client in `clients/typescript` against a live
//! service. Its types are generated again from `docs/openapi.json`, its hand-written layer and
//! tests are compiled against them (`tsc`), and its tests call the service as `cargo run`
//! starts it (embedded SQLite, console provider) on a free port, with a throwaway API key and
//! one test number, and webhook endpoints allowed on loopback (`WEBHOOK_ALLOW_PRIVATE`) so that
//! a test receives and verifies the service's real deliveries; so an API change the client no
//! longer matches fails either the compiler or a call.
//!
//! Its npm packages are installed with `npm ci` from the committed lockfile, only when that
//! lockfile changed since the last install.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::api_fuzz::{build_server, free_address, throwaway_key, Server};

const CLIENT_DIR: &str = "clients/typescript";
/// A number whose verifications take [`TEST_CODE`] and reach no provider (`TEST_NUMBERS`).
const TEST_NUMBER: &str = "+15005550009";
const TEST_CODE: &str = "246810";
/// The lockfile `npm ci` last installed, kept beside what it installed.
const INSTALLED_LOCK: &str = "node_modules/.xtask-installed-lock.json";
pub(crate) const INSTALL_HINT: &str =
    "install Node.js 18 or later with npm (Debian: apt-get install nodejs npm)";

pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let client = root.join(CLIENT_DIR);
    install_packages(&client)?;
    build_server(&root)?;

    let data = root.join("target").join("typescript-client");
    // A fresh database each run: an earlier run's verifications must not change this one's.
    let _ = std::fs::remove_dir_all(&data);
    let address = free_address()?;
    let key = throwaway_key("typescript");
    let test_numbers = format!("{TEST_NUMBER}:{TEST_CODE}");
    let server = Server::start(
        &root,
        &data,
        address,
        &key,
        &[
            ("ENVIRONMENT", "test"),
            ("TEST_NUMBERS", &test_numbers),
            // The webhook tests' receiver listens on plain http on loopback.
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    )?;
    server.wait_until_up()?;

    let status = npm(&client)
        .arg("test")
        .env("SMS_NOTIFY_URL", format!("http://{address}"))
        .env("SMS_NOTIFY_API_KEY", &key)
        .env("SMS_NOTIFY_TEST_NUMBER", TEST_NUMBER)
        .env("SMS_NOTIFY_TEST_CODE", TEST_CODE)
        .status()
        .context("could not start `npm test`")?;
    drop(server);
    if !status.success() {
        bail!(
            "the TypeScript client's build or tests failed ({status}), see above; after an API \
             change, run `cargo xtask openapi` and adapt {CLIENT_DIR}/src"
        );
    }
    Ok(())
}

/// `npm ci` when the committed lockfile differs from the one installed last.
fn install_packages(client: &Path) -> anyhow::Result<()> {
    let lock = std::fs::read(client.join("package-lock.json"))
        .with_context(|| format!("{CLIENT_DIR}/package-lock.json is missing"))?;
    let installed = client.join(INSTALLED_LOCK);
    if std::fs::read(&installed).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    let status = npm(client)
        .args(["ci", "--no-audit", "--no-fund"])
        .status()
        .with_context(|| format!("could not run npm: {INSTALL_HINT}"))?;
    if !status.success() {
        bail!("`npm ci` in {CLIENT_DIR} failed ({status}), see above");
    }
    std::fs::write(&installed, lock).context("could not record the installed lockfile")
}

fn npm(client: &Path) -> Command {
    let mut command = Command::new("npm");
    command.current_dir(client);
    command
}
