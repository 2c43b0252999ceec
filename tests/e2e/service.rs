//! The service binary, `sms-notify-server`, as a separate process: for what only a process
//! shows (SIGKILL, SIGTERM and its exit status, several instances on one database).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use tokio::process::{Child, Command};
use wiremock::MockServer;

use crate::support::{ACCOUNT_SID, API_KEY, AUTH_TOKEN, FROM};

/// Builds the binary once per test process (a no-op when it is fresh) and returns its path.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = std::process::Command::new(cargo)
            .args(["build", "--package", "app", "--bin", "sms-notify-server"])
            .args(["--message-format", "json-render-diagnostics"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run cargo build");
        assert!(output.status.success(), "cargo build failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|message| message["target"]["name"] == "sms-notify-server")
            .and_then(|artifact| artifact["executable"].as_str().map(PathBuf::from))
            .expect("cargo build did not report the sms-notify-server executable")
    })
}

/// What every instance of a test shares: the database, Twilio, the keys.
pub fn shared_env(
    database: &TestDatabase,
    twilio: &MockServer,
    overrides: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database.url.as_str()),
        ("CODE_PEPPER", "e2e-pepper-0123456789abcdef0123456789"),
        ("API_KEYS", &format!("auth:{API_KEY}")),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_PHONE_NUMBER", FROM),
        ("TWILIO_API_BASE_URL", &twilio.uri()),
        ("DISPATCH_POLL_INTERVAL_MS", "30000"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    for (name, value) in overrides {
        env.retain(|(existing, _)| existing != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    env
}

/// One running instance; killed when dropped.
pub struct Service {
    child: Child,
    pub base: String,
    client: reqwest::Client,
}

impl Service {
    /// Starts an instance on a free port and waits until it answers `/healthz`.
    pub async fn start(env: &[(String, String)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("no free port")
            .port();
        let child = Command::new(binary())
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start sms-notify-server");
        let service = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = service
                .client
                .get(format!("{}/healthz", service.base))
                .send()
                .await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return service;
            }
            assert!(Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queues a plain SMS and returns its id.
    pub async fn send(&self, to: &str, body: &str) -> String {
        let response = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"to": to, "body": body}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let message: serde_json::Value = response.json().await.unwrap();
        message["id"].as_str().unwrap().to_owned()
    }

    /// SIGKILL: no shutdown, no cleanup, as when a machine dies.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then the exit status, which must come within `patience`.
    pub async fn terminate(mut self, patience: Duration) -> ExitStatus {
        let pid = self.child.id().expect("the service already exited");
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
        tokio::time::timeout(patience, self.child.wait())
            .await
            .expect("the service did not exit after SIGTERM")
            .unwrap()
    }
}
