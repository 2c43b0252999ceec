//! What an operator sees when `sms-notify-server` starts (issue 26): a failure is one line on
//! stderr and an exit status that says whose it is to fix (2 a setting, 3 the database), logs
//! that a file or a pipeline can read, and a default run whose API key outlives a restart.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::service::binary;
use crate::support::TempDir;

const PATIENCE: Duration = Duration::from_secs(30);
const PEPPER: &str = "startup-pepper-0123456789abcdef0123456789";

/// An empty working directory for one test, removed afterwards.
fn working_dir(label: &str) -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "sms-notify-startup-{label}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// The service in `dir` with only `env`, to its exit. `RUST_BACKTRACE` is set, and must change
/// nothing about what a failure prints.
async fn run_to_exit(dir: &Path, env: &[(&str, &str)]) -> Output {
    let output = Command::new(binary())
        .env_clear()
        .current_dir(dir)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "full")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PATIENCE, output)
        .await
        .expect("the service started instead of failing")
        .unwrap()
}

/// The one line on stderr, after checking that there is exactly one and the exit status.
#[track_caller]
fn one_line_exiting(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    lines[0].to_owned()
}

/// A running service whose stdout (its log, and the key line) is read line by line; killed
/// when dropped.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
    base: String,
}

impl Running {
    async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_on(dir, env, "127.0.0.1").await
    }

    /// Started with `BIND_ADDR=host:PORT` on a free port, once it answers `/healthz` on
    /// 127.0.0.1:PORT (from then on it also hears SIGTERM).
    async fn start_on(dir: &Path, env: &[(&str, &str)], host: &str) -> Self {
        let port = free_port();
        let mut child = Command::new(binary())
            .env_clear()
            .current_dir(dir)
            .envs(env.iter().copied())
            .env("BIND_ADDR", format!("{host}:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let running = Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + PATIENCE;
        let client = reqwest::Client::new();
        loop {
            let health = client.get(format!("{}/healthz", running.base)).send().await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return running;
            }
            assert!(Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first line (seen already or still to come) for which `find` answers.
    async fn wait_for<T>(&mut self, find: impl Fn(&str) -> Option<T>) -> T {
        if let Some(found) = self.seen.iter().find_map(|line| find(line)) {
            return found;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_else(|| panic!("not in the output:\n{}", self.seen.join("\n")));
            let found = find(&line);
            self.seen.push(line);
            if let Some(found) = found {
                return found;
            }
        }
    }

    /// SIGTERM, and the graceful exit that must follow.
    async fn stop(mut self) {
        let pid = self.child.id().expect("the service already exited");
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the service did not exit after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

/// The status `GET /v1/messages` answers with `key`.
async fn list_messages_with(base: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v1/messages"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_unreachable_database_exits_3_at_once_in_one_line_naming_it_without_its_password() {
    let dir = working_dir("unreachable");
    let started = Instant::now();
    let output = run_to_exit(
        &dir.0,
        &[
            ("DATABASE_URL", "postgres://u:secret@127.0.0.1:1/x"),
            ("CODE_PEPPER", PEPPER),
            ("SMS_PROVIDERS", "console"),
        ],
    )
    .await;
    let elapsed = started.elapsed();

    let line = one_line_exiting(&output, 3);
    assert!(line.contains("postgres://u@127.0.0.1:1/x"), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(!line.contains("secret"), "{line}");
    // Not the pool's silent wait: the refusal is known at the first attempt.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[tokio::test]
async fn an_unknown_database_exits_3_naming_it() {
    let dir = working_dir("unknown-database");
    let database = TestDatabase::create().await;
    let url = format!("{}_missing", database.url);
    let name = url.rsplit('/').next().unwrap().to_owned();
    let output = run_to_exit(
        &dir.0,
        &[
            ("DATABASE_URL", url.as_str()),
            ("CODE_PEPPER", PEPPER),
            ("SMS_PROVIDERS", "console"),
        ],
    )
    .await;

    let line = one_line_exiting(&output, 3);
    assert!(
        line.contains(&format!("\"{name}\" does not exist")),
        "{line}"
    );
}

#[tokio::test]
async fn a_bad_value_exits_2_in_one_line_naming_its_variable_without_a_chain_or_backtrace() {
    let dir = working_dir("bad-value");
    let missing_templates = dir.0.join("no-such-templates");
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("TWILIO_ACCOUNT_SID", "not-a-sid"),
                ("TWILIO_AUTH_TOKEN", "token"),
                ("TWILIO_PHONE_NUMBER", "+15005550006"),
            ],
            "TWILIO_ACCOUNT_SID",
        ),
        (
            &[("TEMPLATES_DIR", missing_templates.to_str().unwrap())],
            "TEMPLATES_DIR",
        ),
        (&[("BIND_ADDR", "localhost")], "BIND_ADDR"),
    ];
    for (env, variable) in cases {
        let output = run_to_exit(&dir.0, env).await;
        let line = one_line_exiting(&output, 2);
        assert!(line.contains(&format!("{variable}: ")), "{line}");
    }
    // Refused before anything was opened.
    assert!(!dir.0.join("data").exists());
}

#[tokio::test]
async fn bind_addr_localhost_listens_on_the_loopback_address() {
    let dir = working_dir("localhost");
    // Answering /healthz on 127.0.0.1 is what `start_on` waits for.
    let mut service = Running::start_on(&dir.0, &[], "localhost").await;
    let listening = service
        .wait_for(|line| line.contains("listening").then(|| line.to_owned()))
        .await;
    assert!(
        listening.contains(service.base.trim_start_matches("http://")),
        "{listening}"
    );
    service.stop().await;
}

#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = working_dir("no-colour");
    let mut service = Running::start(&dir.0, &[]).await;
    service
        .wait_for(|line| line.contains("listening").then_some(()))
        .await;
    assert!(service.seen.len() >= 3, "{:?}", service.seen);
    for line in &service.seen {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
    service.stop().await;
}

#[tokio::test]
async fn with_log_format_json_every_line_is_json_the_api_key_in_a_field_of_its_own() {
    let dir = working_dir("json");
    let mut service = Running::start(&dir.0, &[("LOG_FORMAT", "json")]).await;
    let key = service
        .wait_for(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            let key = entry["api_key"].as_str()?.to_owned();
            assert_eq!(entry["message"], format!("API key: {key}"), "{line}");
            Some(key)
        })
        .await;
    service
        .wait_for(|line| line.contains("listening").then_some(()))
        .await;
    for line in &service.seen {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert_eq!(list_messages_with(&service.base, &key).await, 200);
    service.stop().await;
}

#[tokio::test]
async fn the_default_run_keeps_its_api_key_across_a_restart() {
    let dir = working_dir("restart");
    let key_line = |line: &str| line.strip_prefix("API key: ").map(str::to_owned);

    let mut first = Running::start(&dir.0, &[]).await;
    let key = first.wait_for(key_line).await;
    first
        .wait_for(|line| line.contains("listening").then_some(()))
        .await;
    assert_eq!(list_messages_with(&first.base, &key).await, 200);
    first.stop().await;
    let kept: PathBuf = dir.0.join("data/api-key");
    assert!(kept.exists(), "no {}", kept.display());

    let mut second = Running::start(&dir.0, &[]).await;
    assert_eq!(
        second.wait_for(key_line).await,
        key,
        "printed at each start"
    );
    second
        .wait_for(|line| line.contains("listening").then_some(()))
        .await;
    assert_eq!(list_messages_with(&second.base, &key).await, 200);
    assert_eq!(
        list_messages_with(&second.base, "not-the-key-0123456789").await,
        401
    );
    second.stop().await;
}
