//! The HTTP API's request bodies, through the real router in-process (tower's `oneshot`, no
//! socket) over an in-memory SQLite store: a body travels the `ApiJson` extractor, the handler
//! and the use case as it would in the service. Whatever the body, the answer is never a 5xx,
//! and an error is a problem document.
//!
//! An input's first byte picks the route (`0` to `5`, modulo 6: send a message, start a
//! verification, check it, check by number, preview a template, and Twilio's status callback,
//! which the harness signs so that the form gets past the signature); the rest is the body.

use std::sync::{Arc, OnceLock};

use adapters_sqlite::SqliteStore;
use app::usecases::codes::CodeHasher;
use app::usecases::StorePorts;
use app::wiring::config::TwilioStatusCallbacks;
use app::Services;
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use secrecy::SecretString;
use tower::ServiceExt as _;

use crate::status_callback::{twilio_signature, AUTH_TOKEN};

const API_KEY: &str = "fuzz-api-key-0123456789";
/// A `TEST_NUMBERS` entry: its verifications use this code, so inputs can pass a check.
const TEST_NUMBER: &str = "+15005550006";
const TEST_CODE: &str = "123456";
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// A verification of [`TEST_NUMBER`] started before the first input, for the check route.
    verification: String,
}

/// Built on the first input, not before: AFL++ forks its children where the fuzzing loop
/// starts, and a fork keeps no thread but the caller (SQLite's connections each have one).
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(Harness::new)
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let router = runtime.block_on(async {
            let store = Arc::new(SqliteStore::in_memory().await.unwrap());
            let services = Services::builder(
                StorePorts::of(store.clone()),
                Arc::new(::template::Templates::built_in().unwrap()),
                CodeHasher::new(SecretString::from("p".repeat(32))),
            )
            .api_keys(app::usecases::auth::ApiKeys::parse(&format!("fuzz:{API_KEY}")).unwrap())
            .twilio_status_callbacks(Some(TwilioStatusCallbacks {
                url: CALLBACK_URL.parse().unwrap(),
                auth_token: SecretString::from(AUTH_TOKEN),
            }))
            .readiness(app::observability::health::Readiness::new(
                store,
                Arc::new(app::providers::console::ConsoleSmsProvider),
            ))
            .test_numbers(
                app::providers::test_numbers::TestNumbers::parse(&format!(
                    "{TEST_NUMBER}:{TEST_CODE}"
                ))
                .unwrap(),
            )
            .build();
            app::http::router(Arc::new(services), false)
        });
        let started = runtime.block_on(send(
            &router,
            json_request("/v1/verifications", format!(r#"{{"to":"{TEST_NUMBER}"}}"#)),
        ));
        assert_eq!(started.0, 201, "starting a verification: {}", started.1);
        let body: serde_json::Value = serde_json::from_str(&started.1).unwrap();
        let verification = body["id"].as_str().unwrap().to_owned();
        Self {
            runtime,
            router,
            verification,
        }
    }
}

pub fn run(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let harness = harness();
    let body = body.to_vec();
    let request = match route % 6 {
        0 => json_request("/v1/messages", body),
        1 => json_request("/v1/verifications", body),
        2 => json_request(
            &format!("/v1/verifications/{}/check", harness.verification),
            body,
        ),
        3 => json_request("/v1/verification-checks", body),
        4 => json_request("/v1/templates/two-factor-auth/preview", body),
        _ => signed_form(&body),
    };
    let (status, content_type, text) = harness.runtime.block_on(async {
        let response = harness.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    });
    assert!(status < 500, "{status} for {data:?}: {text}");
    if status >= 400 {
        assert_eq!(
            content_type, "application/problem+json",
            "{status} for {data:?}: {text}"
        );
    }
}

fn json_request(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {API_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

/// The form as Twilio would post it, signed with the account's token.
fn signed_form(body: &[u8]) -> Request<Body> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    Request::post("/v1/webhooks/twilio/status")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            "x-twilio-signature",
            twilio_signature(CALLBACK_URL, &params),
        )
        .body(Body::from(body.to_vec()))
        .unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> (u16, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run_clean() {
        crate::run_seeds("json_bodies", super::run);
    }
}
