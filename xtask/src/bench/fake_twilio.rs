//! A fake Twilio Messages API for the benchmark: it answers each well-formed send `201` after a
//! configurable latency, like Twilio's, and notes when each one arrived and for which number.
//! Anything else (wrong path, credentials or form) is answered `400` and counted, so that a
//! misconfigured run cannot pass for a fast one. With a messages-per-second limit it answers
//! `429` (Twilio's 20429) beyond it, as a token bucket refilled at that rate.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "bench-twilio-token";
pub const FROM: &str = "+15005550006";

pub struct FakeTwilio {
    pub base_url: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

struct State {
    latency: Duration,
    expected_path: String,
    expected_auth: String,
    /// Arrival times of accepted sends, in arrival order.
    arrivals: Mutex<Vec<Instant>>,
    accepted: Arc<AtomicU64>,
    /// When the send for each number arrived (the first one, if several).
    by_number: Mutex<HashMap<String, Instant>>,
    arrived: Notify,
    rejected: AtomicU64,
    too_many: AtomicU64,
    bucket: Option<Mutex<TokenBucket>>,
    sids: AtomicU64,
}

struct TokenBucket {
    per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.refilled_at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl FakeTwilio {
    /// Listens on a free local port; `mps_limit` is the sender's messages per second, if any.
    pub async fn start(latency: Duration, mps_limit: Option<u32>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen for the fake Twilio")?;
        let address: SocketAddr = listener.local_addr()?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
        let state = Arc::new(State {
            latency,
            expected_path: format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"),
            expected_auth: format!("Basic {credentials}"),
            arrivals: Mutex::default(),
            accepted: Arc::default(),
            by_number: Mutex::default(),
            arrived: Notify::new(),
            rejected: AtomicU64::new(0),
            too_many: AtomicU64::new(0),
            bucket: mps_limit.map(|limit| {
                Mutex::new(TokenBucket {
                    per_second: f64::from(limit),
                    tokens: f64::from(limit),
                    refilled_at: Instant::now(),
                })
            }),
            sids: AtomicU64::new(0),
        });
        let server = tokio::spawn(serve(
            listener,
            state.clone(),
            |state, request| async move { answer(&state, request).await },
        ));
        Ok(Self {
            base_url: format!("http://{address}"),
            state,
            server,
        })
    }

    /// Arrival times of the sends accepted so far.
    pub fn arrivals(&self) -> Vec<Instant> {
        lock(&self.state.arrivals).clone()
    }

    /// Counts the sends accepted so far, for a progress line.
    pub fn accepted_counter(&self) -> Arc<AtomicU64> {
        self.state.accepted.clone()
    }

    /// How many numbers have had a send accepted: the messages that reached Twilio, when each
    /// goes to its own number.
    pub fn distinct_numbers(&self) -> u64 {
        lock(&self.state.by_number).len() as u64
    }

    /// Requests that were not a well-formed send with the right credentials.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Sends answered `429` for exceeding the messages-per-second limit.
    pub fn too_many_requests(&self) -> u64 {
        self.state.too_many.load(Ordering::Relaxed)
    }

    /// When the send to `to` arrived, waiting for it at most `patience`.
    pub async fn arrival_for(&self, to: &str, patience: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before looking, so that an arrival in between is not missed.
            let arrived = self.state.arrived.notified();
            if let Some(at) = lock(&self.state.by_number).get(to) {
                return Some(*at);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves HTTP/1 on `listener`, each request answered by `handle` with `state`: the fake
/// Twilio's loop, and the event receiver's.
pub(super) async fn serve<S, F, Fut>(listener: TcpListener, state: Arc<S>, handle: F)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(state.clone(), request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            // A connection the service drops mid-request ends here; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let well_addressed = request.method() == Method::POST
        && request.uri().path() == state.expected_path
        && request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|value| value.as_bytes() == state.expected_auth.as_bytes());
    let form = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    let to = match (well_addressed, fields.get("To"), fields.get("Body")) {
        (true, Some(to), Some(body))
            if fields.get("From").map(String::as_str) == Some(FROM) && !body.is_empty() =>
        {
            to.clone()
        }
        _ => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"code": 21604, "message": "not a send the benchmark expects", "status": 400}"#
                    .to_owned(),
            );
        }
    };
    if let Some(bucket) = &state.bucket {
        if !lock(bucket).take(arrived) {
            state.too_many.fetch_add(1, Ordering::Relaxed);
            return json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"code": 20429, "message": "Too Many Requests", "status": 429}"#.to_owned(),
            );
        }
    }
    lock(&state.arrivals).push(arrived);
    state.accepted.fetch_add(1, Ordering::Relaxed);
    lock(&state.by_number).entry(to).or_insert(arrived);
    state.arrived.notify_waiters();
    tokio::time::sleep(state.latency).await;
    let sid = sid(state.sids.fetch_add(1, Ordering::Relaxed));
    json(
        StatusCode::CREATED,
        format!(
            r#"{{"sid": "{sid}", "status": "queued", "num_segments": "1", "price": null, "price_unit": "USD", "error_code": null, "error_message": null}}"#
        ),
    )
}

/// The sid of the `n`th send this fake accepted (from 0), which a status callback names.
pub(super) fn sid(n: u64) -> String {
    format!("SM{n:032x}")
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
