//! The client events' figure: webhook events as a fast local receiver sees them: how
//! many events one instance delivers per second, and how long an event takes at idle from the
//! change it reports to the receiver. The receiver answers `204` at once and notes when each
//! post arrived; the endpoint is plain `http` on loopback (`WEBHOOK_ALLOW_PRIVATE=true`).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::fake_twilio::{lock, serve, FakeTwilio};
use super::load::{self, Call, Target};
use super::report::Goal;
use super::service::{FreshStore, StoreKind};
use super::Bench;

const HOOK_PATH: &str = "/hooks/bench";
/// The code every test number of the latency run accepts.
const TEST_CODE: &str = "123456";
/// Between two changes of the latency run, so that each finds the deliverer idle.
const CHANGE_SPACING: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(120);
/// Connections that queue the messages whose events are delivered.
const FILL_CONNECTIONS: usize = 64;

/// A receiver of webhook posts that answers `204` at once.
struct Receiver {
    url: String,
    state: Arc<Received>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Received {
    count: AtomicU64,
    /// When each post arrived, and the id of the object its event is about, when asked to
    /// note them (the latency run): parsing every post would load the throughput run.
    noted: Mutex<Vec<(Instant, String)>>,
    note: std::sync::atomic::AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Receiver {
    async fn start(note: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen for the webhook receiver")?;
        let address: SocketAddr = listener.local_addr()?;
        let state = Arc::new(Received::default());
        state.note.store(note, Ordering::Relaxed);
        let server = tokio::spawn(serve(
            listener,
            state.clone(),
            |state, request| async move { receive(&state, request).await },
        ));
        Ok(Self {
            url: format!("http://{address}{HOOK_PATH}"),
            state,
            server,
        })
    }

    fn count(&self) -> u64 {
        self.state.count.load(Ordering::Relaxed)
    }

    fn last(&self) -> Option<Instant> {
        *lock(&self.state.last)
    }

    fn arrival_of(&self, object: &str) -> Option<Instant> {
        lock(&self.state.noted)
            .iter()
            .find(|(_, id)| id == object)
            .map(|(at, _)| *at)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(state: &Received, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let well_addressed = request.method() == Method::POST && request.uri().path() == HOOK_PATH;
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::new()));
    if !well_addressed {
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    if state.note.load(Ordering::Relaxed) {
        let object = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|event| event["data"]["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        lock(&state.noted).push((arrived, object));
    }
    state.count.fetch_add(1, Ordering::Relaxed);
    *lock(&state.last) = Some(arrived);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// One request on a connection of its own (the setup's few calls, `PATCH` included).
async fn request(
    target: &Target,
    method: Method,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let stream = TcpStream::connect(target.address)
        .await
        .context("cannot connect to the service")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, target.address.to_string())
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", target.api_key),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A number of the latency run: each change has its own test number.
fn test_number(n: usize) -> String {
    format!("+1555901{n:04}")
}

/// How many events the database holds, through `psql`.
fn events_recorded(database_url: &str) -> anyhow::Result<u64> {
    let output = Command::new("psql")
        .args([
            database_url,
            "--quiet",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "-c",
            "SELECT count(*) FROM webhook_events",
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql cannot count the events: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("psql's count is not a number")
}

impl Bench {
    /// Client events (PostgreSQL): the delivery rate, then the time to delivery at idle.
    pub(super) async fn client_events(&mut self) -> anyhow::Result<()> {
        let store = StoreKind::Postgres;
        self.events_delivered(store).await?;
        self.time_to_receiver(store).await
    }

    /// Client events, rate: a backlog of events, all due at once, delivered to one endpoint.
    ///
    /// The events are those of real messages (`message.sent`, recorded by the triggers as the
    /// fake Twilio accepts each send), kept while the endpoint is disabled; enabling it and
    /// replaying them makes every one due at once, each delivered for the first time (its
    /// data rendered from its message then), as a burst of changes would be.
    async fn events_delivered(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let count: u64 = if self.plan.quick { 1_000 } else { 20_000 };
        let twilio = FakeTwilio::start(Duration::ZERO, None).await?;
        let overrides = [("WEBHOOK_ALLOW_PRIVATE", "true".to_owned())];
        eprintln!("==> bench: client events delivered ({})", store.name());
        let fresh = FreshStore::create(store, "events", &self.bench_dir)?;
        let service = self.start_on(&fresh, "events", &twilio, &overrides).await?;
        let receiver = Receiver::start(false).await?;
        let endpoint = request(
            &service.target,
            Method::POST,
            "/v1/webhook-endpoints",
            json!({"url": receiver.url, "events": ["message.sent"]}),
        )
        .await?;
        let id = endpoint["id"]
            .as_str()
            .context("an endpoint without an id")?
            .to_owned();
        // Disabled, it gets nothing, and its events are kept for a replay.
        request(
            &service.target,
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{id}"),
            json!({"enabled": false}),
        )
        .await?;
        // Every event comes after the endpoint.
        let since = endpoint["created_at"].clone();
        let filled = load::fill(
            &service.target,
            FILL_CONNECTIONS,
            count,
            Arc::new(super::message_call),
        )
        .await;
        if filled.succeeded < count {
            bail!(
                "queued only {} of {count} messages: {}",
                filled.succeeded,
                filled.first_failure.as_deref().unwrap_or("no failure")
            );
        }
        let deadline = Instant::now() + PATIENCE;
        while events_recorded(&fresh.database_url)? < count {
            if Instant::now() >= deadline {
                bail!("the {count} messages' events were not recorded within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if receiver.count() > 0 {
            bail!("a disabled endpoint received events");
        }

        request(
            &service.target,
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{id}"),
            json!({"enabled": true}),
        )
        .await?;
        let started = Instant::now();
        let replay = request(
            &service.target,
            Method::POST,
            &format!("/v1/webhook-endpoints/{id}/replay"),
            json!({ "since": since }),
        )
        .await?;
        if replay["queued"].as_u64() != Some(count) {
            bail!("the replay queued {} events, not {count}", replay["queued"]);
        }
        let deadline = Instant::now() + PATIENCE;
        while receiver.count() < count {
            if Instant::now() >= deadline {
                bail!(
                    "the receiver got {} of {count} events within {PATIENCE:?}",
                    receiver.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = receiver.last().context("no event arrived")?;
        let rate = count as f64 / last.duration_since(started).as_secs_f64();
        self.figure(
            11,
            "client events delivered to a local receiver",
            store,
            (rate, "/s"),
            Goal::AtLeast(3_000.0),
            format!("{count} message.sent events of messages sent through the fake Twilio, recorded while the endpoint was disabled, then enabled and replayed: all due at once, each delivered for the first time; from the replay's request to the receiver's last post (it answers 204 at once, http on loopback)"),
        );
        super::ensure_twilio_content(&twilio)?;
        service.stop().await
    }

    /// Client events, idle: from a check's answer (`approved`) to the receiver getting the
    /// `verification.approved` event, one change at a time.
    async fn time_to_receiver(&mut self, store: StoreKind) -> anyhow::Result<()> {
        let changes = if self.plan.quick { 10 } else { 200 };
        let numbers: Vec<String> = (0..changes)
            .map(|n| format!("{}:{TEST_CODE}", test_number(n)))
            .collect();
        let twilio = FakeTwilio::start(super::TWILIO_LATENCY, None).await?;
        let overrides = [
            ("WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
            ("ENVIRONMENT", "test".to_owned()),
            ("TEST_NUMBERS", numbers.join(",")),
        ];
        let (_fresh, service) = self
            .start(store, "event_latency", &twilio, &overrides)
            .await?;
        let receiver = Receiver::start(true).await?;
        request(
            &service.target,
            Method::POST,
            "/v1/webhook-endpoints",
            json!({"url": receiver.url, "events": ["verification.approved"]}),
        )
        .await?;
        let mut connection = load::Connection::new(&service.target);
        let mut latencies = Vec::with_capacity(changes);
        for n in 0..changes {
            let (status, body) = connection
                .post(&Call {
                    path: "/v1/verifications".into(),
                    body: json!({"to": test_number(n)}).to_string(),
                    twilio_signature: None,
                })
                .await?;
            if !status.is_success() {
                bail!(
                    "starting a verification answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            let verification: Value = serde_json::from_slice(&body)?;
            let id = verification["id"]
                .as_str()
                .context("a verification without an id")?
                .to_owned();
            // The start wrote nothing the endpoint receives: the deliverer is idle again.
            tokio::time::sleep(CHANGE_SPACING).await;
            let (status, body) = connection
                .post(&Call {
                    path: format!("/v1/verifications/{id}/check"),
                    body: json!({ "code": TEST_CODE }).to_string(),
                    twilio_signature: None,
                })
                .await?;
            let answered = Instant::now();
            let checked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() || checked["status"] != "approved" {
                bail!("the check answered {status}: {checked}");
            }
            let deadline = answered + Duration::from_secs(10);
            let arrived = loop {
                if let Some(at) = receiver.arrival_of(&id) {
                    break at;
                }
                if Instant::now() >= deadline {
                    bail!("the approval of {id} reached no receiver within 10 s");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            let ms = match arrived.checked_duration_since(answered) {
                Some(after) => after.as_secs_f64() * 1e3,
                None => -(answered.duration_since(arrived).as_secs_f64() * 1e3),
            };
            latencies.push(ms);
        }
        let method = format!("{changes} verifications to test numbers (TEST_NUMBERS, no provider), each approved by a check {} ms after its start, one at a time; from reading the check's answer to the receiver getting verification.approved (negative: the receiver had it first)", CHANGE_SPACING.as_millis());
        self.figure(
            11,
            "time from a change to its event, idle, p50",
            store,
            (load::quantile(&latencies, 0.5), "ms"),
            Goal::None,
            method.clone(),
        );
        self.figure(
            11,
            "time from a change to its event, idle, p99",
            store,
            (load::quantile(&latencies, 0.99), "ms"),
            Goal::AtMost(50.0),
            method,
        );
        service.stop().await
    }
}
