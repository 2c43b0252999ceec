//! The operator's side of the CLI tests: a working directory, the built binary run in it
//! with its environment, and a wiremock Twilio it is configured to call.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wiremock_form::Form;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-test-token";
pub const FROM: &str = "+15005550006";
pub const MESSAGES_PATH: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
pub const ACCOUNT_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef.json";

/// An operator's working directory (an embedded database, a `templates/` folder) and a fake
/// Twilio that the tool is configured to use.
pub struct Operator {
    pub dir: tempfile::TempDir,
    pub twilio: MockServer,
}

impl Operator {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/shipping.hbs"),
            "Hi {{name}}, order {{order}} has shipped.",
        )
        .unwrap();
        Self {
            dir,
            twilio: MockServer::start().await,
        }
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
    }

    /// Runs `sms-notify args...` to its end, with only the configuration below in its
    /// environment (the test runner's `DATABASE_URL` must not leak in).
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args).await
    }

    /// As [`Operator::run`], with these variables added to the environment.
    pub async fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut command = assert_cmd::Command::cargo_bin("sms-notify").unwrap();
        command
            .env_clear()
            .current_dir(self.dir.path())
            .env("TEMPLATES_DIR", self.dir.path().join("templates"))
            .env("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
            .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
            .env("TWILIO_PHONE_NUMBER", FROM)
            .env("TWILIO_API_BASE_URL", self.twilio.uri())
            .env("RETRY_BASE_MS", "10")
            .envs(env.iter().copied())
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        Run(output)
    }

    /// Runs `sms-notify args...` against a deployment's PostgreSQL `database_url` whose
    /// provider's secrets this shell does not hold.
    pub async fn run_on_postgres_without_a_provider(
        &self,
        database_url: &str,
        args: &[&str],
    ) -> Run {
        let mut command = assert_cmd::Command::cargo_bin("sms-notify").unwrap();
        command
            .env_clear()
            .current_dir(self.dir.path())
            .env("TEMPLATES_DIR", self.dir.path().join("templates"))
            .env("DATABASE_URL", database_url)
            .env("CODE_PEPPER", "cli-pepper-0123456789abcdef0123456789")
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        Run(output)
    }

    /// Runs `sms-notify args...` in the default setup, the embedded database with no provider
    /// (the console prints each SMS), with these variables added.
    pub async fn run_with_console(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut command = assert_cmd::Command::cargo_bin("sms-notify").unwrap();
        command
            .env_clear()
            .current_dir(self.dir.path())
            .env("TEMPLATES_DIR", self.dir.path().join("templates"))
            .envs(env.iter().copied())
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        Run(output)
    }

    pub fn database(&self) -> &Path {
        self.dir.path()
    }

    /// Twilio accepts one message with exactly these form fields, once.
    pub async fn twilio_expects_sms(&self, to: &str, body: &str, sid: &str) {
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
            .and(Form::exactly(&[("To", to), ("From", FROM), ("Body", body)]))
            .respond_with(accepted(sid))
            .expect(1)
            .mount(&self.twilio)
            .await;
    }

    pub async fn received_forms(&self) -> Vec<HashMap<String, String>> {
        self.twilio
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(wiremock_form::fields)
            .collect()
    }
}

/// What a run printed and how it ended.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    #[track_caller]
    pub fn succeeded(&self) -> &Self {
        assert!(
            self.0.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Exit code 1: a negative answer.
    #[track_caller]
    pub fn failed(&self) -> &Self {
        self.exited_with(1)
    }

    /// 1: a negative answer; 2: the command, its input or the configuration; 3: a dependency.
    #[track_caller]
    pub fn exited_with(&self, code: i32) -> &Self {
        assert_eq!(
            self.0.status.code(),
            Some(code),
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Stdout as the one JSON document `--json` prints, with nothing else beside it.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}):\n{}",
                self.stdout()
            )
        })
    }
}

pub fn accepted(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({
        "sid": sid, "status": "queued", "num_segments": "1", "price": null,
        "price_unit": "USD", "error_code": null, "error_message": null
    }))
}
