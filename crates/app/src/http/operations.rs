//! The routes operators and tooling call: liveness, readiness, metrics, and the API's own
//! OpenAPI description. None needs an API key: they say nothing about any client's data.

use std::sync::Arc;
use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use crate::Services;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    /// Always `ready`: a service that is not ready answers 503 with a problem document.
    status: &'static str,
    /// Each check by name (`database`, `migrations`, `provider`): `ok`.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    checks: std::collections::BTreeMap<&'static str, &'static str>,
    /// The SMS providers, in failover order (`twilio`, `vonage`, or `console`).
    providers: Vec<&'static str>,
    /// Set when SMS are not sent: the `console` provider prints them to the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// The process is alive and serving HTTP; nothing else is checked.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Whether this instance can do its job: the database answers and carries every migration of
/// this version, and the provider is ready (for Twilio: its credentials are accepted, checked
/// at most once a minute).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadyView),
        (status = 503, description = "Not ready: the detail names each failed check",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn readyz(State(services): State<Arc<Services>>) -> Result<Json<ReadyView>, ApiError> {
    let checks = services.readiness().check().await;
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|check| {
            check
                .problem
                .as_ref()
                .map(|problem| format!("{}: {problem}", check.name))
        })
        .collect();
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            failed.join("; "),
        ));
    }
    let providers = services.readiness().provider_names().to_vec();
    Ok(Json(ReadyView {
        status: "ready",
        checks: checks.iter().map(|check| (check.name, "ok")).collect(),
        warning: providers
            .contains(&"console")
            .then_some("the console provider prints SMS, codes included, to the log: none is sent"),
        providers,
    }))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "application/openmetrics-text"),
        (status = 503, description = "The database does not answer",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn metrics(State(services): State<Arc<Services>>) -> Result<Response, ApiError> {
    let text = services.render_metrics().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::observability::metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// This description, generated from the handlers and their types.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description", body = Object))
)]
pub async fn openapi_json() -> Response {
    static SPEC: LazyLock<String> =
        LazyLock::new(|| super::openapi().to_json().unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        SPEC.as_str(),
    )
        .into_response()
}
