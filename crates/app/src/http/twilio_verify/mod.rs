//! The second inbound adapter: Twilio Verify's v2 API (`/v2/Services/...`), so that a client
//! written against Twilio's SDKs moves here by changing the SDK's Verify base URL. It speaks
//! Twilio's wire format (form-encoded requests, Twilio's JSON shapes and error documents, HTTP
//! Basic with an account SID and auth token) and calls the same [`Services`] use cases as
//! `/v1`: a verification started here is the one `/v1` reads, counted in the same limits,
//! reports and metrics under the API key its account stands for.
//!
//! Its routes are not in `/openapi.json` (nor in `docs/openapi.json` and the TypeScript client
//! generated from it): they are Twilio's API, described by Twilio's own OpenAPI document, and
//! the contract tests (`tests/e2e/twilio_verify.rs`) hold them to that one. They are served
//! only when `VERIFY_COMPAT_ACCOUNTS` names an account; otherwise `/v2` is not found.

mod services;
mod verifications;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use uuid::Uuid;

use crate::Services;
use wire::TwilioError;

/// Form bodies are small; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `router` with the `/v2` routes added when `services` has Twilio accounts to serve.
pub fn mount(router: Router<Arc<Services>>, services: &Services) -> Router<Arc<Services>> {
    if services.verify_compat().accounts.is_empty() {
        return router;
    }
    router.merge(routes())
}

/// Every `/v2` route, with its own limits and Twilio's errors for what they refuse.
fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/v2/Services", post(services::create).get(services::list))
        .route(
            "/v2/Services/{sid}",
            get(services::fetch)
                .post(services::update)
                .delete(services::delete),
        )
        .route(
            "/v2/Services/{service_sid}/Verifications",
            post(verifications::start),
        )
        .route(
            "/v2/Services/{service_sid}/Verifications/{sid}",
            get(verifications::fetch).post(verifications::update),
        )
        .route(
            "/v2/Services/{service_sid}/VerificationCheck",
            post(verifications::check),
        )
        .route("/v2/{*rest}", axum::routing::any(not_found))
        .layer(CatchPanicLayer::custom(wire::for_panic))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(
            wire::twilio_errors_for_bare_errors,
        ))
}

/// A path under `/v2` that is none of the routes: Twilio's 20404.
async fn not_found(uri: axum::http::Uri) -> TwilioError {
    TwilioError::not_found(uri.path())
}

/// A Twilio SID: two letters naming the kind (`VA` a service, `VE` a verification) and 32
/// hexadecimal digits, here those of the resource's UUID, so that the verification
/// `VE0190...` of `/v2` is the verification `0190...` of `/v1`.
fn sid(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.simple())
}

/// The UUID in a SID of the kind `prefix`, in either case; `None` when it is not one.
fn parse_sid(prefix: &str, text: &str) -> Option<Uuid> {
    let hex = text.strip_prefix(prefix)?;
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

/// Where this service's `/v2` resources are, for their `url`s: `PUBLIC_BASE_URL`, or else the
/// host the request named (Twilio's SDKs follow these to page through lists).
fn base_url(services: &Services, headers: &HeaderMap) -> String {
    if let Some(base) = &services.verify_compat().public_base_url {
        return base.as_str().trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Twilio's timestamps: RFC 3339 in UTC to the second (`2026-01-01T12:00:00Z`).
fn twilio_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sid_is_its_kind_and_the_uuids_hex_and_reads_back_in_either_case() {
        let id = Uuid::parse_str("0190f3b6-7a1c-7d2e-8f00-0123456789ab").unwrap();
        let verification = sid("VE", id);
        assert_eq!(verification, "VE0190f3b67a1c7d2e8f000123456789ab");
        assert_eq!(verification.len(), 34);
        assert_eq!(parse_sid("VE", &verification), Some(id));
        assert_eq!(parse_sid("VE", &verification.to_uppercase()), Some(id));
        assert_eq!(parse_sid("VA", &verification), None);
        assert_eq!(parse_sid("VE", "VE0190"), None);
        assert_eq!(
            parse_sid("VE", "VE0190f3b6-7a1c-7d2e-8f00-0123456789"),
            None
        );
    }
}
