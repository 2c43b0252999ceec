//! The end-to-end harness: `TestApp` starts the service in-process on a random port with a
//! store and a wiremock Twilio, and offers typed helpers for what the tests do over HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use serde_json::Value;
use tokio::sync::oneshot;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use wiremock_form::Form;

pub const API_KEY: &str = "test-key-0123456789abcdef";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-test-token";
pub const FROM: &str = "+15005550006";
pub const MESSAGES_PATH: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const CODE_PEPPER: &str = "e2e-pepper-0123456789abcdef0123456789";

pub struct TestApp {
    pub base: String,
    /// Where `/metrics` is served when `METRICS_BIND_ADDR` gives it a listener of its own.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    /// Shared by the instances of one database (see [`TestApp::spawn_sibling`]).
    pub twilio: Arc<MockServer>,
    database_url: Option<String>,
    _database: Option<TestDatabase>,
    _data_dir: Option<TempDir>,
    _stop: oneshot::Sender<()>,
}

/// A clock that stands still until the test moves it; starts at the time it is made.
pub struct TestClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl TestClock {
    pub fn now_shared() -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(chrono::Utc::now())))
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl ports::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

/// A directory removed when the test ends.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestApp {
    /// The production shape without a database server: Twilio (wiremock), and SQLite in memory
    /// under a name of this test's own, shared by the store's writer and readers. For what
    /// any store does alike (the conformance kit holds both to that): validation, problem
    /// documents, the API's answers.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// [`TestApp::spawn`] with some variables set (or overridden).
    pub async fn spawn_with(variables: &[(&'static str, &str)]) -> Self {
        let twilio = Arc::new(MockServer::start().await);
        let env = production_env(&in_memory_database_url(), &twilio, variables);
        Self::start(env, twilio, None, None, None).await
    }

    /// The production shape on PostgreSQL (a fresh database) and Twilio (wiremock), for what
    /// needs PostgreSQL itself: several instances on one database, wake-ups through
    /// LISTEN/NOTIFY, races decided by its row locks, the store read behind the service's back.
    pub async fn spawn_on_postgres() -> Self {
        Self::spawn_on_postgres_with(&[]).await
    }

    /// [`TestApp::spawn_on_postgres`] with some variables set (or overridden).
    pub async fn spawn_on_postgres_with(variables: &[(&'static str, &str)]) -> Self {
        let database = TestDatabase::create().await;
        let twilio = Arc::new(MockServer::start().await);
        let env = production_env(&database.url, &twilio, variables);
        Self::start(env, twilio, Some(database), None, None).await
    }

    /// [`TestApp::spawn_on_postgres_with`], going by `clock`: time the test moves.
    pub async fn spawn_on_postgres_with_clock(
        variables: &[(&'static str, &str)],
        clock: Arc<TestClock>,
    ) -> Self {
        let database = TestDatabase::create().await;
        let twilio = Arc::new(MockServer::start().await);
        let env = production_env(&database.url, &twilio, variables);
        Self::start(env, twilio, Some(database), None, Some(clock)).await
    }

    /// [`TestApp::spawn_sibling`], going by `clock`.
    pub async fn spawn_sibling_with_clock(
        &self,
        variables: &[(&'static str, &str)],
        clock: Arc<TestClock>,
    ) -> Self {
        let url = self
            .database_url
            .as_deref()
            .filter(|url| url.starts_with("postgres"))
            .expect("siblings share a PostgreSQL database: start with spawn_on_postgres");
        let env = production_env(url, &self.twilio, variables);
        Self::start(env, self.twilio.clone(), None, None, Some(clock)).await
    }

    /// Another instance on this one's database and Twilio, configured alike but for
    /// `variables`: what several replicas of the service are.
    pub async fn spawn_sibling(&self, variables: &[(&'static str, &str)]) -> Self {
        let url = self
            .database_url
            .as_deref()
            .filter(|url| url.starts_with("postgres"))
            .expect("siblings share a PostgreSQL database: start with spawn_on_postgres");
        let env = production_env(url, &self.twilio, variables);
        Self::start(env, self.twilio.clone(), None, None, None).await
    }

    /// The no-configuration shape: embedded SQLite and the console provider.
    pub async fn spawn_default() -> Self {
        let dir = std::env::temp_dir().join(format!("sms-notify-e2e-{}", uuid_like()));
        let mut env = base_env();
        env.insert(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("data.sqlite").display()),
        );
        let twilio = Arc::new(MockServer::start().await);
        Self::start(env, twilio, None, Some(TempDir(dir)), None).await
    }

    async fn start(
        env: HashMap<&'static str, String>,
        twilio: Arc<MockServer>,
        database: Option<TestDatabase>,
        data_dir: Option<TempDir>,
        clock: Option<Arc<TestClock>>,
    ) -> Self {
        let database_url = env.get("DATABASE_URL").cloned();
        let config = app::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
        let server = match clock {
            Some(clock) => app::Server::build_with_clock(config, clock).await.unwrap(),
            None => app::Server::build(config).await.unwrap(),
        };
        let base = format!("http://{}", server.local_addr());
        let metrics_base = server.metrics_addr().map(|addr| format!("http://{addr}"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            metrics_base,
            client: reqwest::Client::new(),
            twilio,
            database_url,
            _database: database,
            _data_dir: data_dir,
            _stop: stop,
        }
    }

    /// The database this instance uses, for tests that play another instance.
    pub fn database(&self) -> &TestDatabase {
        self._database
            .as_ref()
            .expect("only TestApp::spawn_on_postgres has a PostgreSQL database")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// A request with another key than the client's (`API_KEY`): an admin's, say.
    pub async fn send_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Answers every send with a 201 carrying `sid`.
    pub async fn twilio_accepts(&self, sid: &str) {
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "sid": sid, "status": "queued", "num_segments": "1", "price": null,
                "price_unit": "USD", "error_code": null, "error_message": null
            })))
            .mount(&self.twilio)
            .await;
    }

    /// Waits until Twilio has received `count` requests and returns their form fields.
    pub async fn twilio_requests(&self, count: usize) -> Vec<HashMap<String, String>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let requests: Vec<Request> = self.twilio.received_requests().await.unwrap_or_default();
            if requests.len() >= count {
                return requests.iter().map(wiremock_form::fields).collect();
            }
            assert!(
                Instant::now() < deadline,
                "Twilio received {} requests, expected {count}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls a message until its status is `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, message) = self.get(&format!("/v1/messages/{id}")).await;
            assert_eq!(code, 200, "{message}");
            if message["status"] == status {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "message stayed {} instead of {status}: {message}",
                message["status"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl TestApp {
    /// Expects exactly `count` two-factor SMS, to any of `numbers`, each request complete:
    /// Basic auth, and the form fields To, From, Body (the built-in template) and
    /// ValidityPeriod, nothing else.
    pub async fn twilio_expects_codes(&self, numbers: &[&str], count: u64) {
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
            .and(code_sms(numbers))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "sid": "SM00000000000000000000000000000099", "status": "queued",
                "num_segments": "1", "price": null, "price_unit": "USD",
                "error_code": null, "error_message": null
            })))
            .expect(count)
            .mount(&self.twilio)
            .await;
    }

    /// Answers a POST with the status, the body as text and the headers as text, so that a
    /// test can look through everything a client sees.
    pub async fn post_raw(&self, path: &str, body: Value) -> (u16, String, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        (status, response.text().await.unwrap(), headers)
    }
}

/// The form of a two-factor SMS as the Twilio adapter sends it, to any of `numbers`.
fn code_sms(numbers: &[&str]) -> Form {
    let numbers: Vec<String> = numbers.iter().map(|number| number.to_string()).collect();
    Form::exactly(&[("From", FROM)])
        .field_where("To", move |to| numbers.iter().any(|number| number == to))
        .field_where("Body", |body| {
            body.starts_with("Your Smarter Firms verification code is: ")
        })
        .field_where("ValidityPeriod", |seconds| {
            seconds
                .parse::<u32>()
                .is_ok_and(|seconds| (1..=600).contains(&seconds))
        })
}

fn production_env(
    database_url: &str,
    twilio: &MockServer,
    variables: &[(&'static str, &str)],
) -> HashMap<&'static str, String> {
    let mut env = base_env();
    env.insert("DATABASE_URL", database_url.to_owned());
    env.insert("CODE_PEPPER", CODE_PEPPER.into());
    env.insert("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into());
    env.insert("TWILIO_AUTH_TOKEN", AUTH_TOKEN.into());
    env.insert("TWILIO_PHONE_NUMBER", FROM.into());
    env.insert("TWILIO_API_BASE_URL", twilio.uri());
    env.insert("TWILIO_REQUEST_TIMEOUT_MS", "2000".into());
    for (name, value) in variables {
        env.insert(name, (*value).to_owned());
    }
    env
}

fn base_env() -> HashMap<&'static str, String> {
    HashMap::from([
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("API_KEYS", format!("auth:{API_KEY}")),
        // Long, so that a test passing proves the wake-up, not the poll.
        ("DISPATCH_POLL_INTERVAL_MS", "30000".to_owned()),
    ])
}

/// The digits of the code in a rendered two-factor SMS.
pub fn code_in(body: &str) -> String {
    let start = body.find("is: ").expect("the code follows `is: `") + 4;
    body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// A database URL of SQLite in memory, named for this test alone: the name keeps tests in one
/// process apart, and the database goes when the service's last connection closes.
fn in_memory_database_url() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "sqlite://file:sms-notify-e2e-{}-{}?mode=memory&cache=shared",
        uuid_like(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Twilio send whose form holds exactly `To`, `From` and `Body` (no status callback is
/// configured in tests), with `To` equal to `to` and `Body` starting with `body_prefix` (a
/// code's text goes on with a random code). A one-time code adds `.any("ValidityPeriod")`.
pub fn twilio_send(to: &str, body_prefix: &str) -> Form {
    let body_prefix = body_prefix.to_owned();
    Form::exactly(&[("To", to), ("From", FROM)])
        .field_where("Body", move |body| body.starts_with(&body_prefix))
}

impl TestApp {
    /// The service's metrics, one sample per line, comments left out.
    pub async fn metrics(&self) -> Vec<String> {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }
}
