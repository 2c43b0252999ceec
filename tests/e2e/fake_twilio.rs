//! A wiremock Twilio for the dispatcher's tests: a matcher for the Messages form, and a
//! responder that notes when each request arrived, so that tests can count sends per message
//! and check rates and concurrency as Twilio would see them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockBuilder, Request, Respond, ResponseTemplate};
use wiremock_form::Form;

use crate::support::{ACCOUNT_SID, AUTH_TOKEN, MESSAGES_PATH};

/// The form holds exactly the fields `fixed` and `free` name, with `fixed`'s values; `free`
/// fields vary from message to message (`Body`, `ValidityPeriod`).
pub fn form_fields(fixed: &[(&str, &str)], free: &[&str]) -> Form {
    free.iter()
        .fold(Form::exactly(fixed), |form, name| form.any(name))
}

/// A send from the configured number with the account's credentials.
pub fn messages_post(fields: Form) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(fields)
}

/// Answers `201` with a fresh SID after `delay`, recording each request's arrival and `Body`.
#[derive(Clone)]
pub struct Recorder {
    delay: Duration,
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
    sids: Arc<AtomicU64>,
}

impl Recorder {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            arrivals: Arc::default(),
            sids: Arc::default(),
        }
    }

    /// Every request so far: when it arrived and its `Body`, in arrival order.
    pub fn arrivals(&self) -> Vec<(Instant, String)> {
        self.arrivals.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// Waits until at least `count` requests arrived, failing after `patience`.
    pub async fn wait_for(&self, count: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        while self.count() < count {
            assert!(
                Instant::now() < deadline,
                "Twilio received {} requests, expected {count}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The most requests that were being answered at one time, given that each is answered
    /// `delay` after it arrives (the sender sees each call last at least that long).
    pub fn most_at_once(&self) -> usize {
        let arrivals: Vec<Instant> = self.arrivals().into_iter().map(|(at, _)| at).collect();
        arrivals
            .iter()
            .map(|start| {
                arrivals
                    .iter()
                    .filter(|other| **other <= *start && *start < **other + self.delay)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The most requests that arrived within any one second.
    pub fn most_in_one_second(&self) -> usize {
        let arrivals: Vec<Instant> = self.arrivals().into_iter().map(|(at, _)| at).collect();
        arrivals
            .iter()
            .map(|start| {
                arrivals
                    .iter()
                    .filter(|other| **other >= *start && **other < *start + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = wiremock_form::fields(request)
            .remove("Body")
            .unwrap_or_default();
        self.arrivals.lock().unwrap().push((Instant::now(), body));
        let sid = format!("SM{:032x}", self.sids.fetch_add(1, Ordering::Relaxed));
        ResponseTemplate::new(201)
            .set_body_json(serde_json::json!({
                "sid": sid, "status": "queued", "num_segments": "1", "price": null,
                "price_unit": "USD", "error_code": null, "error_message": null
            }))
            .set_delay(self.delay)
    }
}
