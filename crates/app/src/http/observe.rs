//! What every request goes through before its handler: a request id (the client's
//! `X-Request-Id` when it is sane, else a new one), echoed in the response and kept as the
//! request's context; and the request metrics, by route template, status and API key name.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::observability::metrics::Metrics;
use crate::usecases::request_context::RequestContext;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept; a longer or odd one is replaced, since it goes into logs and
/// the database.
const MAX_REQUEST_ID_LEN: usize = 128;

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=".contains(c))
}

/// Runs the request inside its [`RequestContext`] and echoes the id.
pub async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|id| acceptable(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    // The span reads it from the request, and handlers may too.
    request.headers_mut().insert(REQUEST_ID, header.clone());
    let mut response = RequestContext::new(id).scope(next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID, header);
    response
}

/// Counts and times each request. Runs inside [`request_context`], so the API key name the
/// handler authenticated is known when the response is.
pub async fn record_metrics(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // Unmatched paths are one series, not one per path a scanner tries.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let api_key = crate::usecases::request_context::api_key();
    metrics.http_request(
        &method,
        &route,
        response.status().as_u16(),
        api_key.as_deref(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::Router;
    use ports::{MockMessageReports, QueueStats};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn ten_thousand_made_up_methods_add_one_other_series() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                record_metrics,
            ));
        for _ in 0..10_000 {
            // `Z` first, so that none is one of HTTP's own methods by chance.
            let method: String = std::iter::once('Z')
                .chain((0..rand::random_range(2..12)).map(|_| rand::random_range('A'..='Z')))
                .collect();
            let request = Request::builder()
                .method(method.as_str())
                .uri("/anything")
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let mut reports = MockMessageReports::new();
        reports.expect_status_counts().returning(|| Ok(vec![]));
        reports.expect_queue_stats().returning(|| {
            Ok(QueueStats {
                depth: 0,
                oldest_queued_at: None,
            })
        });
        let text = metrics.render(&reports, chrono::Utc::now()).await.unwrap();
        let methods: BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix(r#"sms_notify_http_requests_total{method=""#))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(
            methods == BTreeSet::from(["other"]),
            "{} method series",
            methods.len()
        );
        let other = r#"sms_notify_http_requests_total{method="other",route="unmatched",status="404",api_key=""} 10000"#;
        assert!(text.lines().any(|line| line == other), "{text}");
    }

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(acceptable("0193a5b2-7c1e-7000-8000-000000000000"));
        assert!(acceptable("trace:abc/123"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
