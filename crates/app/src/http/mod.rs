//! The HTTP API (axum): routes, authentication, problem documents.

mod extract;
mod messages;
mod problem;
mod verifications;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use problem::ApiError;

use crate::Services;

/// Requests are small JSON documents; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/verifications", post(verifications::start))
        .route("/v1/verifications/{id}", get(verifications::get))
        .route("/v1/verifications/{id}/check", post(verifications::check))
        .route(
            crate::config::STATUS_CALLBACK_PATH,
            post(webhooks::twilio_status),
        )
        .route("/v1/verifications/{id}/cancel", post(verifications::cancel))
        .route(
            "/v1/verification-checks",
            post(verifications::check_by_number),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            ApiError::not_found("no such route; see the API reference in README.md")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    api_key = tracing::field::Empty,
                )
            }),
        )
        .with_state(services)
}

/// Parses an id from the path; a malformed one is simply not found.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} with id `{text}`")))
}
