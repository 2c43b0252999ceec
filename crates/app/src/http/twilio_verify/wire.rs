//! What every `/v2` request and answer goes through: Twilio's JSON error document (`code`,
//! `message`, `more_info`, `status`) instead of `/v1`'s problem documents, since Twilio's SDKs
//! read that one; HTTP Basic authentication as an account of `VERIFY_COMPAT_ACCOUNTS`; and
//! form-encoded bodies, read leniently as Twilio reads them (fields this API does not know are
//! ignored, so that a newer SDK's extra parameter does not break a client).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;

use crate::Services;

/// Twilio's error codes this API answers with, each with the HTTP status Twilio pairs it with.
pub mod code {
    /// Authentication failed.
    pub const AUTHENTICATE: u32 = 20003;
    /// The resource does not take this method.
    pub const METHOD_NOT_ALLOWED: u32 = 20004;
    /// No such resource (also: a verification that was approved, canceled or expired).
    pub const NOT_FOUND: u32 = 20404;
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: u32 = 20429;
    /// An internal error.
    pub const INTERNAL: u32 = 20500;
    /// The service is unavailable.
    pub const UNAVAILABLE: u32 = 20503;
    /// A parameter is missing, malformed, or asks for what this service does not offer.
    pub const INVALID_PARAMETER: u32 = 60200;
    /// The verification's checks are used up.
    pub const MAX_CHECK_ATTEMPTS: u32 = 60202;
    /// PSD2: `Amount` was given without `Payee`, or `Payee` without `Amount`.
    pub const PSD2_PARAMETERS_REQUIRED: u32 = 60206;
    /// The verification's sends are used up.
    pub const MAX_SEND_ATTEMPTS: u32 = 60203;
    /// The fraud guard blocked the code.
    pub const DELIVERY_BLOCKED: u32 = 60410;
    /// The destination's country is not allowed (Twilio's geo permissions).
    pub const GEO_BLOCKED: u32 = 60605;
}

/// Twilio's error document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwilioError {
    pub code: u32,
    pub message: String,
    pub more_info: String,
    #[serde(serialize_with = "status_code")]
    pub status: StatusCode,
    #[serde(skip)]
    pub retry_after_seconds: Option<u64>,
}

fn status_code<S: serde::Serializer>(
    status: &StatusCode,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl TwilioError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            more_info: format!("https://www.twilio.com/docs/errors/{code}"),
            status,
            retry_after_seconds: None,
        }
    }

    /// 60200, naming the parameter as Twilio does (`Invalid parameter `To``), with why.
    pub fn invalid_parameter(name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMETER,
            format!("Invalid parameter `{name}`: {why}"),
        )
    }

    /// 20404 for the resource at `path`.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::AUTHENTICATE, "Authenticate")
    }

    pub fn too_many(code: u32, message: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    /// A failure of this service: logged with its detail, answered without it.
    pub fn internal(error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %error, "a /v2 request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "Internal error; try again",
        )
    }
}

impl From<ports::StoreError> for TwilioError {
    fn from(error: ports::StoreError) -> Self {
        match error {
            ports::StoreError::Unavailable(_) => {
                tracing::warn!(error = %error, "the store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code::UNAVAILABLE,
                    "Service unavailable; try again",
                )
            }
            ports::StoreError::Corrupt(_) | ports::StoreError::Refused(_) => Self::internal(&error),
        }
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after_seconds;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        response
    }
}

/// A handler that panicked: Twilio's 500, the message in the log only.
pub fn for_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    tracing::error!(panic = message, "a /v2 request handler panicked");
    TwilioError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        code::INTERNAL,
        "Internal error; try again",
    )
    .into_response()
}

/// Turns axum's own error answers on `/v2` (405, a body over the limit, the timeout's 503)
/// into Twilio's error document, so that an SDK reads every failure alike.
pub async fn twilio_errors_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => TwilioError::new(
            status,
            code::METHOD_NOT_ALLOWED,
            "This resource does not accept this method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => TwilioError::new(
            status,
            code::INVALID_PARAMETER,
            "The request body is larger than the service accepts",
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => TwilioError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            "The request took too long; try again",
        ),
        status if status.is_server_error() => {
            TwilioError::new(status, code::INTERNAL, "Internal error; try again")
        }
        status => TwilioError::new(status, code::INVALID_PARAMETER, "The request is not valid"),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let rendered = error.into_response();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, rendered.into_body())
}

/// The Twilio account a request authenticated as, through HTTP Basic (account SID, auth
/// token), and the API key name it acts as.
pub struct TwilioClient {
    pub account_sid: String,
    pub api_key: String,
}

impl FromRequestParts<Arc<Services>> for TwilioClient {
    type Rejection = TwilioError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let credentials = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .ok_or_else(TwilioError::unauthorized)?;
        let (sid, token) = credentials
            .split_once(':')
            .ok_or_else(TwilioError::unauthorized)?;
        let account = services
            .verify_compat()
            .accounts
            .authenticate(sid, token)
            .ok_or_else(TwilioError::unauthorized)?;
        tracing::Span::current().record("api_key", account.api_key());
        crate::usecases::request_context::record_api_key(
            account.api_key(),
            account.api_key_is_admin(),
        );
        Ok(TwilioClient {
            account_sid: account.sid().to_owned(),
            api_key: account.api_key().to_owned(),
        })
    }
}

/// A form-encoded body (`To=%2B15551234567&Channel=sms`), by field name; a field given twice
/// keeps its last value.
#[derive(Debug, Default)]
pub struct TwilioForm(HashMap<String, String>);

impl TwilioForm {
    pub fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The field's value; an empty one counts as absent, as Twilio reads it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, TwilioError> {
        self.get(name).ok_or_else(|| {
            TwilioError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMETER,
                format!("Missing required parameter {name} in the post body"),
            )
        })
    }

    /// A boolean field as Twilio's SDKs write one (`true`/`false`, in any case).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, TwilioError> {
        self.get(name)
            .map(|value| match value.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(TwilioError::invalid_parameter(
                    name,
                    "expected true or false",
                )),
            })
            .transpose()
    }

    /// An integer field.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, TwilioError> {
        self.get(name)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| TwilioError::invalid_parameter(name, "expected an integer"))
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequest<S> for TwilioForm {
    type Rejection = TwilioError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => TwilioError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        code::INVALID_PARAMETER,
                        "The request body is larger than the service accepts",
                    ),
                    status => {
                        TwilioError::new(status, code::INVALID_PARAMETER, rejection.body_text())
                    }
                })?;
        Ok(Self::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_twilios_document_with_its_link() {
        let error = TwilioError::invalid_parameter("To", "not a phone number");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({
                "code": 60200,
                "message": "Invalid parameter `To`: not a phone number",
                "more_info": "https://www.twilio.com/docs/errors/60200",
                "status": 400
            })
        );
    }

    #[test]
    fn a_form_reads_encoded_fields_and_takes_empty_ones_as_absent() {
        let form = TwilioForm::parse(
            b"To=%2B15551234567&Channel=sms&Locale=&CodeLength=8&Psd2Enabled=True",
        );
        assert_eq!(form.get("To"), Some("+15551234567"));
        assert_eq!(form.get("Locale"), None);
        assert_eq!(form.integer("CodeLength").unwrap(), Some(8));
        assert_eq!(form.flag("Psd2Enabled").unwrap(), Some(true));
        assert_eq!(
            form.required("Code").unwrap_err().code,
            code::INVALID_PARAMETER
        );
        assert!(TwilioForm::parse(b"CodeLength=six")
            .integer("CodeLength")
            .is_err());
    }
}
