//! Every error a client sees: RFC 9457 `application/problem+json`, naming the offending field
//! where there is one. Internal failures answer a generic 500 and log the detail.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ApiError {
    /// The HTTP status, repeated in the body as RFC 9457 has it.
    #[serde(serialize_with = "status_code")]
    #[schema(value_type = u16, example = 422)]
    pub status: StatusCode,
    /// A stable, documented kind (`invalid-phone-number`), relative to the API's base.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "invalid-phone-number")]
    pub kind: &'static str,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub detail: String,
    /// The request field that is wrong (`to`, `data.code`, `Idempotency-Key`), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Twilio's error code for the same answer (`20404`, `60202`) where the API follows
    /// Twilio Verify, so that a client ported from Twilio keeps its error handling.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 20404)]
    pub code: Option<u32>,
    /// What the fraud guard decided, and why, when it refused the request (`fraud-blocked`,
    /// `line-type-refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<Box<super::verifications::RiskView>>,
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after_seconds: Option<u64>,
}

/// How soon a client is told to try again while the database is unavailable: an outage that
/// a restart or a failover ends is over in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 2;

fn status_code<S: Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            code: None,
            risk: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_twilio_code(mut self, code: u32) -> Self {
        self.code = Some(code);
        self
    }

    pub fn invalid_field(field: &str, kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            "Invalid request field",
            detail,
        )
        .with_field(field)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
        }
    }

    /// A failure that is ours, not the client's: the detail goes to the log, not the client.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(%error, "request failed");
        Self::internal_failure()
    }

    fn internal_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; try again",
        )
    }

    /// The database is down: a 503 at once (never a request held until it returns), with a
    /// `Retry-After` a client can follow.
    pub fn unavailable(error: &dyn std::error::Error) -> Self {
        tracing::error!(%error, "dependency unavailable");
        Self {
            retry_after_seconds: Some(UNAVAILABLE_RETRY_AFTER_SECONDS),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "the service cannot reach its database; try again shortly",
            )
        }
    }
}

/// What a handler that panicked answers (`CatchPanicLayer`): a generic 500, the panic's
/// message in the log only.
pub fn for_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    tracing::error!(panic = message, "a request handler panicked");
    ApiError::internal_failure().into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after_seconds;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ports::StoreError> for ApiError {
    fn from(error: ports::StoreError) -> Self {
        match error {
            ports::StoreError::Unavailable(_) => ApiError::unavailable(&error),
            ports::StoreError::Corrupt(_) | ports::StoreError::Refused(_) => {
                ApiError::internal(&error)
            }
        }
    }
}

/// Longest body of a bare error response that is kept as the problem's detail; longer ones are
/// not messages meant for a client.
const MAX_BARE_DETAIL: usize = 300;

/// Turns every error response that is not yet a problem document (axum's own rejections: 405,
/// a path that does not parse, a body over the limit; the timeout's 503) into one, keeping its
/// status and headers (`Allow`, ...), so that a client parses one error format whatever
/// failed.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_BARE_DETAIL)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let problem = bare_problem(status, text);
    parts.headers.remove(header::CONTENT_LENGTH);
    let rendered = problem.into_response();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, rendered.into_body())
}

fn bare_problem(status: StatusCode, text: Option<String>) -> ApiError {
    let (kind, title, default_detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "Method not allowed",
            "this route does not accept this method; see the Allow header",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body-too-large",
            "Body too large",
            "the request body is larger than the service accepts",
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "Request timed out",
            "the request took too long to complete; try again",
        ),
        status if status.is_server_error() => (
            "internal",
            "Internal error",
            "the request could not be completed; try again",
        ),
        _ => ("bad-request", "Bad request", "the request is not valid"),
    };
    // A server error's text may hold internals; a client error's is axum's explanation.
    let detail = match text {
        Some(text) if status.is_client_error() => text,
        _ => default_detail.to_owned(),
    };
    ApiError::new(status, kind, title, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_carries_its_status_in_the_body() {
        let problem = ApiError::invalid_field("to", "invalid-phone-number", "no plus");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "invalid-phone-number",
                "title": "Invalid request field",
                "status": 422,
                "detail": "no plus",
                "field": "to"
            })
        );
    }

    #[test]
    fn bare_errors_keep_client_text_but_not_server_text() {
        let bad = bare_problem(StatusCode::BAD_REQUEST, Some("Invalid URL".into()));
        assert_eq!(bad.detail, "Invalid URL");
        let internal = bare_problem(StatusCode::BAD_GATEWAY, Some("upstream at 10.0.0.7".into()));
        assert_eq!(internal.kind, "internal");
        assert!(!internal.detail.contains("10.0.0.7"));
    }
}
