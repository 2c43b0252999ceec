//! The HTTP API (axum): routes, authentication, problem documents, and the OpenAPI description
//! generated from the handlers themselves.
//!
//! Every route is registered through [`utoipa_axum::routes!`] in [`api`], which takes its path
//! and method from the handler's `#[utoipa::path]`: a route cannot be served without being
//! described (the tests in `openapi` hold the rest of the router to that too).

mod extract;
mod messages;
mod observe;
mod openapi;
mod operations;
mod problem;
mod reports;
mod templates;
mod verifications;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use problem::ApiError;

use crate::Services;

/// Requests are small JSON documents; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Every route, each with its description.
fn api() -> OpenApiRouter<Arc<Services>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(messages::send, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(verifications::start))
        .routes(routes!(verifications::get))
        .routes(routes!(verifications::check))
        .routes(routes!(templates::list))
        .routes(routes!(templates::preview))
        .routes(routes!(reports::usage))
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::metrics))
        .routes(routes!(operations::openapi_json))
}

/// The OpenAPI description of [`router`], as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

pub fn router(services: Arc<Services>) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .fallback(|| async { ApiError::not_found("no such route; see /openapi.json for the API") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
        .layer(axum::middleware::from_fn_with_state(
            services.metrics.clone(),
            observe::record_metrics,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = request
                        .headers()
                        .get(&observe::REQUEST_ID)
                        .and_then(|value| value.to_str().ok()),
                    api_key = tracing::field::Empty,
                )
            }),
        )
        .layer(axum::middleware::from_fn(observe::request_context))
        .with_state(services)
}

/// Parses an id from the path; a malformed one is simply not found.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} with id `{text}`")))
}
