//! The load generator: a fixed number of HTTP/1.1 keep-alive connections to the service, driven
//! either closed-loop (each connection sends its next request as soon as the last is answered:
//! the most the service can take) or open-loop at a fixed rate (each request has a planned
//! start, and its latency counts from that plan, so a stalled service cannot hide its stall by
//! slowing the load down: coordinated omission).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One request to make: a JSON `POST` with the API key, or Twilio's form when signed.
pub struct Call {
    pub path: String,
    pub body: String,
    /// Set for a status callback: the body is a form, sent with this `X-Twilio-Signature` and
    /// without the API key, as Twilio posts it.
    pub twilio_signature: Option<String>,
}

/// Makes the `n`th request of a run (`n` counts from 0 across all connections).
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub api_key: Arc<str>,
}

/// One keep-alive connection, reopened when the service closes it.
pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: &Target) -> Self {
        Self {
            target: target.clone(),
            sender: None,
        }
    }

    pub async fn post(&mut self, call: &Call) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(&call.path)
            .header(hyper::header::HOST, self.target.address.to_string());
        let request = match &call.twilio_signature {
            None => request
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", self.target.api_key),
                )
                .header(hyper::header::CONTENT_TYPE, "application/json"),
            Some(signature) => request.header("X-Twilio-Signature", signature).header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            ),
        };
        let request = request.body(Full::new(Bytes::from(call.body.clone())))?;
        self.send(request).await
    }

    /// A `GET` with the API key (which `/healthz` ignores and the reports need).
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(hyper::header::HOST, self.target.address.to_string())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.target.api_key),
            )
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// A request without the API key, `headers` its own (the dashboard's cookies, a form's
    /// content type), answered with the response's headers.
    pub async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(hyper::header::HeaderName, String)],
        body: String,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.target.address.to_string());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.round_trip(request.body(Full::new(Bytes::from(body)))?)
            .await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let (status, _, body) = self.round_trip(request).await?;
        Ok((status, body))
    }

    async fn round_trip(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(open(self.target.address).await?),
        };
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, headers, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        Ok(result?)
    }
}

async fn open(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to the service at {address}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the service closes the connection.
        let _ = connection.await;
    });
    Ok(sender)
}

/// What a run measured: only the requests answered inside its measurement window (after the
/// warm-up) count.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Answered with a 2xx status.
    pub succeeded: u64,
    /// Answered otherwise, or not at all.
    pub failed: u64,
    pub first_failure: Option<String>,
    pub window: Duration,
    /// Latency of each request that succeeded in the window.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.succeeded as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        let ms: Vec<f64> = self
            .latencies
            .iter()
            .map(|latency| latency.as_secs_f64() * 1e3)
            .collect();
        quantile(&ms, q)
    }

    /// Fails when too many requests failed for the figure to mean anything.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        let total = self.succeeded + self.failed;
        if total == 0 {
            bail!("{what}: no request was answered in the measurement window");
        }
        if self.failed * 100 > total {
            bail!(
                "{what}: {} of {total} requests failed, first: {}",
                self.failed,
                self.first_failure.as_deref().unwrap_or("unknown")
            );
        }
        Ok(())
    }

    fn merge(&mut self, other: Outcome) {
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies.extend(other.latencies);
    }

    fn record(&mut self, result: anyhow::Result<(StatusCode, Bytes)>, latency: Duration) {
        match result {
            Ok((status, _)) if status.is_success() => {
                self.succeeded += 1;
                self.latencies.push(latency);
            }
            Ok((status, body)) => {
                self.failed += 1;
                self.first_failure
                    .get_or_insert_with(|| format!("{status} {}", String::from_utf8_lossy(&body)));
            }
            Err(error) => {
                self.failed += 1;
                self.first_failure
                    .get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
}

/// The `q` quantile (0..=1) of `values` (nearest rank); NaN for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How long a run lasts.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub warm_up: Duration,
    pub measure: Duration,
}

/// Every connection sends request after request for the schedule's length.
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    schedule: Schedule,
    make: MakeCall,
    label: &str,
) -> Outcome {
    let started = Instant::now();
    let window_start = started + schedule.warm_up;
    let end = window_start + schedule.measure;
    let next = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, started, end, next.clone());
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (target, make, next) = (target.clone(), make.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(&target);
                let mut outcome = Outcome::default();
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let call = make(next.fetch_add(1, Ordering::Relaxed));
                    let result = connection.post(&call).await;
                    let answered = Instant::now();
                    if answered >= window_start && answered < end {
                        outcome.record(result, answered - sent);
                    }
                }
                outcome
            })
        })
        .collect();
    let outcome = gather(tasks, schedule.measure).await;
    progress.finish();
    outcome
}

/// Requests planned at `rate` per second for the schedule's length, spread over `connections`
/// (each takes every `connections`th planned start, as wrk2 does). A request's latency counts
/// from its planned start, so time spent waiting for a busy connection counts too.
pub async fn open_loop(
    target: &Target,
    connections: usize,
    rate: f64,
    schedule: Schedule,
    make: MakeCall,
    label: &str,
) -> Outcome {
    let started = Instant::now();
    let window_start = started + schedule.warm_up;
    let end = window_start + schedule.measure;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(label, started, end, done.clone());
    let tasks: Vec<_> = (0..connections as u64)
        .map(|first| {
            let (target, make, done) = (target.clone(), make.clone(), done.clone());
            let stride = connections as u64;
            tokio::spawn(async move {
                let mut connection = Connection::new(&target);
                let mut outcome = Outcome::default();
                let mut n = first;
                loop {
                    let planned = started + interval.mul_f64(n as f64);
                    if planned >= end {
                        break;
                    }
                    tokio::time::sleep_until(planned).await;
                    let result = connection.post(&make(n)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    if planned >= window_start {
                        outcome.record(result, Instant::now() - planned);
                    }
                    n += stride;
                }
                outcome
            })
        })
        .collect();
    let outcome = gather(tasks, schedule.measure).await;
    progress.finish();
    outcome
}

/// As [`open_loop`], from now until `stop` turns true, every request counting (no warm-up):
/// the latency of the API while something else runs for as long as it takes.
pub async fn open_loop_until(
    target: &Target,
    connections: usize,
    rate: f64,
    stop: tokio::sync::watch::Receiver<bool>,
    make: MakeCall,
    label: &str,
) -> Outcome {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let done = Arc::new(AtomicU64::new(0));
    // The progress lines stop when the run does; the end only sizes them.
    let progress = Progress::start(
        label,
        started,
        started + Duration::from_secs(3600),
        done.clone(),
    );
    let tasks: Vec<_> = (0..connections as u64)
        .map(|first| {
            let (target, make, done) = (target.clone(), make.clone(), done.clone());
            let stop = stop.clone();
            let stride = connections as u64;
            tokio::spawn(async move {
                let mut connection = Connection::new(&target);
                let mut outcome = Outcome::default();
                let mut n = first;
                loop {
                    let planned = started + interval.mul_f64(n as f64);
                    tokio::time::sleep_until(planned).await;
                    if *stop.borrow() {
                        break;
                    }
                    let result = connection.post(&make(n)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    outcome.record(result, Instant::now() - planned);
                    n += stride;
                }
                outcome
            })
        })
        .collect();
    let mut outcome = gather(tasks, Duration::ZERO).await;
    outcome.window = started.elapsed();
    progress.finish();
    outcome
}

/// Sends `count` requests over `connections`, as fast as they are answered.
pub async fn fill(target: &Target, connections: usize, count: u64, make: MakeCall) -> Outcome {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (target, make, next) = (target.clone(), make.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(&target);
                let mut outcome = Outcome::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        break;
                    }
                    let sent = Instant::now();
                    let result = connection.post(&make(n)).await;
                    outcome.record(result, sent.elapsed());
                }
                outcome
            })
        })
        .collect();
    let mut outcome = gather(tasks, Duration::ZERO).await;
    outcome.window = started.elapsed();
    outcome
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Outcome>>, window: Duration) -> Outcome {
    let mut total = Outcome {
        window,
        ..Outcome::default()
    };
    for task in tasks {
        match task.await {
            Ok(outcome) => total.merge(outcome),
            Err(error) => {
                total.failed += 1;
                total.first_failure.get_or_insert_with(|| error.to_string());
            }
        }
    }
    total
}

/// A line a second on stderr while a run lasts, so a long run shows it is alive.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: &str, started: Instant, end: Instant, count: Arc<AtomicU64>) -> Self {
        let label = label.to_owned();
        let task = tokio::spawn(async move {
            let total = end - started;
            let mut ticks =
                tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                let now = ticks.tick().await;
                if now >= end {
                    break;
                }
                eprintln!(
                    "    {label}: {:.0}/{:.0} s, {} requests",
                    (now - started).as_secs_f64(),
                    total.as_secs_f64(),
                    count.load(Ordering::Relaxed)
                );
            }
        });
        Self { task }
    }

    pub fn finish(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn too_many_failures_make_a_run_meaningless() {
        let outcome = Outcome {
            succeeded: 90,
            failed: 10,
            first_failure: Some("503".into()),
            window: Duration::from_secs(1),
            latencies: Vec::new(),
        };
        let error = outcome.check("figure").unwrap_err().to_string();
        assert!(
            error.contains("10 of 100 requests failed, first: 503"),
            "{error}"
        );
    }
}
