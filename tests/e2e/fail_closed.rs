//! A deployment fails closed: on PostgreSQL the service will not stand in the console for a
//! provider whose secrets are missing; asked for by name, the console says so at every start
//! and in `/readyz`.

use std::process::Stdio;
use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use serde_json::{json, Value};
use tokio::process::Command;
use wiremock::MockServer;

use crate::service::{binary, shared_env};

/// The shared environment of a deployment with every provider variable taken out.
fn without_provider(database: &TestDatabase, twilio: &MockServer) -> Vec<(String, String)> {
    let mut env = shared_env(database, twilio, &[]);
    env.retain(|(name, _)| !name.starts_with("TWILIO_"));
    env
}

#[tokio::test]
async fn postgres_without_a_provider_exits_2_with_one_line_naming_both_ways_out() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let output = Command::new(binary())
        .envs(without_provider(&database, &twilio))
        .env("BIND_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the service did not exit")
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("TWILIO_ACCOUNT_SID"), "{stderr}");
    assert!(lines[0].contains("SMS_PROVIDERS=console"), "{stderr}");
}

#[tokio::test]
async fn the_console_asked_for_by_name_warns_at_start_and_readyz_names_it() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let mut env = without_provider(&database, &twilio);
    env.push(("SMS_PROVIDERS".into(), "console".into()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(binary())
        .envs(env)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ready: Value = loop {
        if let Ok(response) = client.get(&url).send().await {
            assert_eq!(response.status(), 200);
            break response.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready["providers"], json!(["console"]));
    assert!(
        ready["warning"].as_str().unwrap().contains("console"),
        "{ready}"
    );

    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("console provider")),
        "{log}"
    );
}

/// `--help` and `--version` answer and exit instead of starting the service; another argument
/// is refused. No environment is needed for any of them.
#[tokio::test]
async fn help_and_version_answer_and_exit_and_another_argument_is_refused() {
    let run = |argument: &'static str| async move {
        let output = Command::new(binary())
            .arg(argument)
            .env_clear()
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(30), output)
            .await
            .expect("the service started instead of answering")
            .unwrap()
    };
    let help = run("--help").await;
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.starts_with("sms-notify-server"), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");

    let version = run("--version").await;
    assert_eq!(version.status.code(), Some(0));
    let text = String::from_utf8_lossy(&version.stdout);
    assert_eq!(text.trim(), "sms-notify-server 0.0.0");

    let other = run("--port").await;
    assert_eq!(other.status.code(), Some(2));
    let text = String::from_utf8_lossy(&other.stderr);
    assert!(text.contains("`--port`"), "{text}");
}
