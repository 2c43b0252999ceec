//! The HTTP API (axum): routes, authentication, problem documents, and the OpenAPI description
//! generated from the handlers themselves.
//!
//! Every route is registered through [`utoipa_axum::routes!`] in [`api`], which takes its path
//! and method from the handler's `#[utoipa::path]`: a route cannot be served without being
//! described (the tests in `openapi` hold the rest of the router to that too). The one
//! exception is `twilio_verify`, Twilio Verify's own API under `/v2`, which Twilio's OpenAPI
//! document describes rather than ours.

mod client_webhooks;
mod conversion;
mod extract;
mod fraud;
mod fraud_policies;
mod messages;
mod numbers;
mod observe;
mod openapi;
mod operations;
mod problem;
mod reports;
mod templates;
mod twilio_verify;
mod verifications;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use client_webhooks::{event_data, EventObject};
pub use fraud::{decision_cursor, BlockList, BlockView, DecisionPage, SafeEntryView, SafeList};
pub use messages::{message_cursor, MessagePage, MessageView, DEFAULT_PAGE, MAX_PAGE};
pub use numbers::ErasureView;
pub use problem::ApiError;
// The operator CLI prints the API's own documents.
pub use conversion::{
    conversion_report, ConversionGroupBy, ConversionGroupView, ConversionReport, LatencyView,
};
pub use reports::{usage_report, CostView, GroupBy, UsageGroupView, UsageReport};
pub use verifications::{CheckView, VerificationView};

use crate::Services;

/// Requests are small JSON documents; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Every route, each with its description.
fn api() -> OpenApiRouter<Arc<Services>> {
    api_but_metrics().routes(routes!(operations::metrics))
}

/// What the public listener serves when `/metrics` has a listener of its own.
fn api_but_metrics() -> OpenApiRouter<Arc<Services>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(messages::send, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(verifications::start, verifications::list))
        .routes(routes!(verifications::get))
        .routes(routes!(verifications::check))
        .routes(routes!(verifications::cancel))
        .routes(routes!(verifications::check_by_number))
        .routes(routes!(webhooks::twilio_status))
        .routes(routes!(client_webhooks::create, client_webhooks::list))
        .routes(routes!(
            client_webhooks::get,
            client_webhooks::update,
            client_webhooks::delete
        ))
        .routes(routes!(client_webhooks::rotate_secret))
        .routes(routes!(client_webhooks::replay))
        .routes(routes!(templates::list))
        .routes(routes!(templates::preview))
        .routes(routes!(reports::usage))
        .routes(routes!(conversion::conversion))
        .routes(routes!(fraud::list_blocks, fraud::block))
        .routes(routes!(fraud::unblock))
        .routes(routes!(
            fraud::list_safe,
            fraud::add_safe,
            fraud::remove_safe
        ))
        .routes(routes!(fraud::list_decisions))
        .routes(routes!(fraud_policies::get, fraud_policies::set))
        .routes(routes!(numbers::erase))
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::openapi_json))
}

/// The OpenAPI description of [`router`], as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The API. `metrics_apart`: `/metrics` is served on a listener of its own
/// ([`metrics_router`]), not here.
pub fn router(services: Arc<Services>, metrics_apart: bool) -> Router {
    let api = if metrics_apart {
        api_but_metrics()
    } else {
        api()
    };
    let (routes, _) = api.split_for_parts();
    let routes = with_limits(routes.fallback(|| async {
        ApiError::not_found("no such route; see /openapi.json for the API")
    }));
    // The operator's pages: another adapter over the same use cases, under `/dashboard`.
    crate::dashboard::mount(twilio_verify::mount(routes, &services))
        .layer(axum::middleware::from_fn_with_state(
            services.metrics().clone(),
            observe::record_metrics,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let span = tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = request
                        .headers()
                        .get(&observe::REQUEST_ID)
                        .and_then(|value| value.to_str().ok()),
                    api_key = tracing::field::Empty,
                );
                // The caller's trace goes on through this request (W3C `traceparent`).
                crate::observability::traces::continue_request(&span, request.headers());
                span
            }),
        )
        .layer(axum::middleware::from_fn(observe::request_context))
        .with_state(services)
}

/// `/metrics` alone, for the listener at `METRICS_BIND_ADDR`.
pub fn metrics_router(services: Arc<Services>) -> Router {
    let (routes, _) = OpenApiRouter::new()
        .routes(routes!(operations::metrics))
        .split_for_parts();
    with_limits(routes.fallback(|| async {
        ApiError::not_found("no such route: this listener serves /metrics only")
    }))
    .with_state(services)
}

/// The body limit and the timeout, and problem documents for what they (and axum's own
/// rejections, and a handler that panics) answer.
fn with_limits<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(CatchPanicLayer::custom(problem::for_panic))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
}

/// Parses an id from the path; a malformed one is simply not found.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} with id `{text}`")))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request};
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// Only `routes!` adds a route together with its description; a plain `.route(...)` on the
    /// router would serve a path that `/openapi.json` does not show.
    #[test]
    fn routes_are_added_only_with_their_description() {
        let source = include_str!("mod.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
        for call in ["route", "route_service", "nest", "nest_service", "merge"] {
            let forbidden = format!(".{call}(");
            assert!(
                !code.contains(&forbidden),
                "http/mod.rs calls `{forbidden}`"
            );
        }
    }

    async fn panics() -> &'static str {
        panic!("the secret detail")
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_a_500_problem_and_the_next_request_is_served() {
        let routes = with_limits(
            Router::new()
                .route("/panics", get(panics))
                .route("/fine", get(|| async { "fine" })),
        );
        let response = routes
            .clone()
            .oneshot(Request::get("/panics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let problem = problem_of(response).await;
        assert_eq!(problem["type"], "internal");
        assert_eq!(problem["status"], 500);
        assert!(!problem.to_string().contains("secret"), "{problem}");

        let next = routes
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(next.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_a_503_problem() {
        let slow = with_limits(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
                "too late"
            }),
        ));
        let response = slow
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let problem = problem_of(response).await;
        assert_eq!(problem["type"], "timeout");
        assert_eq!(problem["status"], 503);
    }

    /// The problem document a response carries, which it must say it is.
    async fn problem_of(response: axum::response::Response) -> serde_json::Value {
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}
