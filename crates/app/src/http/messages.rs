use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{Attempt, Channel, Message, MessageId, MessageStatus, PhoneNumber, Price};
use serde::{Deserialize, Serialize};

use super::extract::{ApiClient, ApiJson};
use super::{parse_id, ApiError};
use crate::messaging::{Content, SendError, SendRequest};
use crate::Services;

/// Longest `Idempotency-Key` accepted; keys are UUIDs or hashes in practice.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageBody {
    to: String,
    #[serde(default = "default_channel")]
    channel: Channel,
    template: Option<String>,
    data: Option<serde_json::Map<String, serde_json::Value>>,
    body: Option<String>,
}

fn default_channel() -> Channel {
    Channel::Sms
}

#[derive(Debug, Serialize)]
pub struct MessageView {
    id: MessageId,
    status: MessageStatus,
    to: String,
    channel: Channel,
    template: Option<String>,
    segments: u32,
    /// The provider that accepted the message (`twilio`, `vonage`); each attempt names its own.
    provider: Option<String>,
    provider_sid: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    /// What the provider charged, once it has said (`{"amount": "-0.00790", "currency": "USD"}`).
    price: Option<Price>,
    attempts: Vec<Attempt>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl MessageView {
    pub fn new(message: Message, attempts: Vec<Attempt>) -> Self {
        Self {
            id: message.id,
            status: message.status,
            to: message.to.to_string(),
            channel: message.channel,
            template: message.template,
            segments: message.segments,
            provider: message.provider,
            provider_sid: message.provider_sid,
            error_code: message.error_code,
            error_message: message.error_message,
            price: message.price,
            attempts,
            created_at: message.created_at,
            updated_at: message.updated_at,
        }
    }
}

pub async fn send(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendMessageBody>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let to = parse_phone_number("to", &body.to)?;
    let content = match (body.template, body.body) {
        (Some(name), None) => Content::Template {
            name,
            data: serde_json::Value::Object(body.data.unwrap_or_default()),
        },
        (None, Some(text)) if body.data.is_none() => Content::Body(text),
        (None, Some(_)) => {
            return Err(ApiError::invalid_field(
                "data",
                "invalid-body",
                "`data` goes with `template`, not with `body`",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "body",
                "invalid-body",
                "send either `template` (with `data`) or `body`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid_field(
                "template",
                "invalid-body",
                "send either `template` (with `data`) or `body`",
            ))
        }
    };
    let idempotency_key = idempotency_key(&headers)?;
    let enqueued = services
        .send_message(
            &api_key,
            SendRequest {
                to,
                channel: body.channel,
                content,
                idempotency_key,
            },
        )
        .await
        .map_err(|error| match error {
            SendError::Render(template::RenderError::UnknownTemplate(name)) => {
                ApiError::invalid_field(
                    "template",
                    "unknown-template",
                    format!("there is no template `{name}`"),
                )
            }
            SendError::Render(template::RenderError::MissingVariable { template, variable }) => {
                ApiError::invalid_field(
                    &format!("data.{variable}"),
                    "missing-template-variable",
                    format!("template `{template}` needs `{variable}` in `data`"),
                )
            }
            SendError::Render(error @ template::RenderError::Failed { .. }) => {
                ApiError::invalid_field("data", "template-render-failed", error.to_string())
            }
            SendError::EmptyBody | SendError::BodyTooLong => {
                ApiError::invalid_field("body", "invalid-body", error.to_string())
            }
            SendError::Store(error) => error.into(),
        })?;
    let status = match enqueued {
        ports::Enqueued::Created(_) => StatusCode::ACCEPTED,
        // The same request again: the same answer, and nothing new queued.
        ports::Enqueued::Existing(_) => StatusCode::OK,
    };
    Ok((
        status,
        Json(MessageView::new(enqueued.into_message(), Vec::new())),
    ))
}

pub async fn get(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id: MessageId = parse_id(&id, "message")?;
    let (message, attempts) = services
        .message(&api_key, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message with id `{id}`")))?;
    Ok(Json(MessageView::new(message, attempts)))
}

pub(super) fn parse_phone_number(field: &str, text: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(text)
        .map_err(|error| ApiError::invalid_field(field, "invalid-phone-number", error.to_string()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )
        .with_field("Idempotency-Key")
    };
    let key = value.to_str().map_err(|_| bad())?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}
