//! Request extractors whose rejections are problem documents: the API key, and JSON bodies
//! whose errors name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, TimeDelta, Utc};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::problem::ApiError;
use crate::Services;

/// The caller, authenticated by `Authorization: Bearer <key>`.
pub struct ApiClient {
    /// The key's name: whose messages these are.
    pub name: String,
    /// An admin key (`ADMIN_API_KEYS`) may see and act on every key's messages.
    pub is_admin: bool,
}

impl FromRequestParts<std::sync::Arc<Services>> for ApiClient {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &std::sync::Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |detail: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
            )
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send an API key as `Authorization: Bearer <key>`"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let key = services
            .authenticate(key.trim())
            .ok_or_else(|| unauthorized("the API key is not valid"))?;
        tracing::Span::current().record("api_key", key.name());
        crate::usecases::request_context::record_api_key(key.name(), key.is_admin());
        Ok(ApiClient {
            name: key.name().to_owned(),
            is_admin: key.is_admin(),
        })
    }
}

/// A JSON body. Malformed JSON is a 400; a body that does not fit the request type is a 422
/// naming the field (`data.code`, `to`), unknown fields included.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                let mime = value.split(';').next().unwrap_or_default().trim();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "Body too large",
                        "the request body is larger than the service accepts",
                    ),
                    status => ApiError::new(
                        status,
                        "unreadable-body",
                        "Unreadable body",
                        rejection.body_text(),
                    ),
                })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_data() {
                let field = field_name(&path, &inner.to_string());
                let problem = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-body",
                    "Invalid request body",
                    strip_position(&inner.to_string()),
                );
                match field {
                    Some(field) => problem.with_field(field),
                    None => problem,
                }
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "Malformed JSON",
                    inner.to_string(),
                )
            }
        })?;
        deserializer.end().map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                error.to_string(),
            )
        })?;
        if let Some(field) = nul_field(&bytes) {
            // No store keeps a NUL in text (PostgreSQL refuses it), so a string holding one is
            // the client's mistake, answered before anything is stored rather than as a 500.
            let problem = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "Invalid request body",
                "a string holds the NUL character (\\u0000), which no field accepts",
            );
            return Err(match field {
                Some(field) => problem.with_field(field),
                None => problem,
            });
        }
        Ok(ApiJson(value))
    }
}

/// Whether a JSON text escapes a NUL character (`\u0000`, not the escaped backslash of
/// `\\u0000`), and if so the path of the first string holding it (`data.code`; `None` for a
/// key). A scan of the bytes, so that bodies without one (all but a fuzzer's) cost no parse.
fn nul_field(json: &[u8]) -> Option<Option<String>> {
    let escaped = json.windows(6).enumerate().any(|(at, window)| {
        window == b"\\u0000"
            && json[..at]
                .iter()
                .rev()
                .take_while(|byte| **byte == b'\\')
                .count()
                % 2
                == 0
    });
    if !escaped {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(path_of_nul(&value, String::new()))
}

fn path_of_nul(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |name: &str| match path.as_str() {
        "" => name.to_owned(),
        parent => format!("{parent}.{name}"),
    };
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| path_of_nul(item, format!("{path}[{index}]"))),
        serde_json::Value::Object(fields) => fields
            .iter()
            .find_map(|(name, item)| path_of_nul(item, join(name))),
        _ => None,
    }
}

/// The field a data error is about. serde reports a missing field at its parent's path,
/// naming the field only in the message (missing field `to`); an unknown one at its own path.
fn field_name(path: &str, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (parent, Some(name)) => Some(format!("{parent}.{name}")),
        (path, None) => Some(path.to_owned()),
    }
}

/// serde_json appends ` at line 1 column 42` to data errors; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string. A parameter that does not fit its type, and an unknown one, is a 422 naming
/// the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                let problem = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-query",
                    "Invalid query parameter",
                    strip_position(&message),
                );
                match field_name(&path, &message).or_else(|| unknown_field(&message)) {
                    Some(field) => problem.with_field(field),
                    None => problem,
                }
            })
    }
}

/// serde names an unknown field only in its message: unknown field `colour`, expected ...
fn unknown_field(message: &str) -> Option<String> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned)
}

/// A time in a query (`since`, `until`): an RFC 3339 instant, or a period before now (`30m`,
/// `24h`, `7d`) as the CLI writes it. chrono also reads years beyond four digits (to ±262143),
/// which the database does not store and where a day's arithmetic overflows; RFC 3339 has
/// four-digit years only, and a period is at most [`MAX_PERIOD_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryTime {
    At(DateTime<Utc>),
    Ago(TimeDelta),
}

/// Longest period a query may go back: a century.
const MAX_PERIOD_DAYS: i64 = 36_500;

impl QueryTime {
    pub fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            QueryTime::At(at) => at,
            // Bounded by MAX_PERIOD_DAYS, far from chrono's limits.
            QueryTime::Ago(period) => now.checked_sub_signed(period).unwrap_or(now),
        }
    }
}

impl FromStr for QueryTime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            let at = at.with_timezone(&Utc);
            return if (0..=9999).contains(&at.year()) {
                Ok(QueryTime::At(at))
            } else {
                Err("expected a year from 0000 to 9999".to_owned())
            };
        }
        let not_a_time = || {
            format!("`{text}` is not an RFC 3339 date-time nor a relative period like 7d or 24h")
        };
        let unit = text.chars().last().ok_or_else(not_a_time)?;
        let count: i64 = text[..text.len() - unit.len_utf8()]
            .parse()
            .ok()
            .filter(|count| *count >= 0)
            .ok_or_else(not_a_time)?;
        let period = match unit {
            'm' => TimeDelta::try_minutes(count),
            'h' => TimeDelta::try_hours(count),
            'd' => TimeDelta::try_days(count),
            _ => None,
        }
        .ok_or_else(not_a_time)?;
        if period > TimeDelta::days(MAX_PERIOD_DAYS) {
            return Err(format!("a period goes back at most {MAX_PERIOD_DAYS} days"));
        }
        Ok(QueryTime::Ago(period))
    }
}

impl<'de> Deserialize<'de> for QueryTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::nul_field;

    #[test]
    fn an_escaped_nul_is_found_with_its_field_but_an_escaped_backslash_before_u0000_is_text() {
        assert_eq!(
            nul_field(br#"{"to": "+1", "data": {"code": "1\u0000"}}"#),
            Some(Some("data.code".to_owned()))
        );
        assert_eq!(
            nul_field(br#"{"channels": ["sms", "\u0000"]}"#),
            Some(Some("channels[1]".to_owned()))
        );
        assert_eq!(nul_field(br#"{"body": "a \\u0000 b"}"#), None);
        assert_eq!(
            nul_field(br#"{"body": "a \\\u0000 b"}"#),
            Some(Some("body".to_owned()))
        );
        assert_eq!(nul_field(br#"{"body": "plain"}"#), None);
    }
}
