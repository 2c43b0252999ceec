//! The message routes (`POST/GET /v1/messages`, `GET /v1/messages/{id}`) and the pieces both
//! lists share: page limits, cursors, the `to` filter.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use domain::{
    Attempt, AttemptOutcome, Channel, Message, MessageId, MessageStatus, PhoneNumber, Price,
};
use ports::{MessageCursor, MessageFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiClient, ApiJson, ApiQuery, QueryTime};
use super::{parse_id, ApiError};
use crate::usecases::messaging::{Content, SendError, SendRequest};
use crate::Services;

/// Longest `Idempotency-Key` accepted; keys are UUIDs or hashes in practice.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Messages per page unless the client asks (the CLI's `messages list` too).
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageBody {
    /// The destination in E.164 (`+15551234567`).
    to: String,
    #[serde(default = "default_channel")]
    #[schema(default = "sms")]
    channel: Channel,
    /// A template's name; its variables go in `data`.
    template: Option<String>,
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Map<String, serde_json::Value>>,
    /// Plain text, instead of `template`.
    body: Option<String>,
}

fn default_channel() -> Channel {
    Channel::Sms
}

/// One call to the provider for a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    number: u32,
    /// The provider called (`twilio`, `vonage`).
    provider: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    outcome: AttemptOutcome,
    http_status: Option<u16>,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(attempt: Attempt) -> Self {
        Self {
            number: attempt.number,
            provider: attempt.provider,
            started_at: attempt.started_at,
            finished_at: attempt.finished_at,
            outcome: attempt.outcome,
            http_status: attempt.http_status,
            error_code: attempt.error_code,
            error_message: attempt.error_message,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    #[schema(value_type = String, format = Uuid)]
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
    /// What the provider charged, once it has said (`{"amount": "0.0079", "currency": "USD"}`).
    price: Option<Price>,
    attempts: Vec<AttemptView>,
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
            attempts: attempts.into_iter().map(AttemptView::from).collect(),
            created_at: message.created_at,
            updated_at: message.updated_at,
        }
    }
}

/// Queues a message: a template rendered with `data`, or a plain `body`. The same
/// `Idempotency-Key` with the same request answers 200 with the message queued the first
/// time; with a different request, 422 `idempotency-key-reused`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes a retried request return the first message instead of queuing another")),
    request_body = SendMessageBody,
    responses(
        (status = 202, description = "Queued", body = MessageView),
        (status = 200, description = "Queued earlier under the same Idempotency-Key with the same request: the message as it is now", body = MessageView),
        (status = 422, description = "The Idempotency-Key was used with a different request (`idempotency-key-reused`), or a field is wrong",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error, naming the field when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn send(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
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
            SendError::CountryNotAllowed(refusal) => {
                ApiError::invalid_field("to", "country-not-allowed", refusal.to_string())
            }
            SendError::VoiceIsForCodes => {
                ApiError::invalid_field("channel", "channel-not-offered", error.to_string())
            }
            SendError::EmptyBody | SendError::BodyTooLong | SendError::NulCharacter => {
                ApiError::invalid_field("body", "invalid-body", error.to_string())
            }
            // As payment APIs answer it: the key names another request, which is not replayed.
            SendError::IdempotencyKeyReused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                error.to_string(),
            )
            .with_field("Idempotency-Key"),
            SendError::BudgetExhausted(refusal) => super::verifications::fraud_problem(&refusal),
            SendError::Store(error) => error.into(),
        })?;
    match enqueued {
        ports::Enqueued::Created(message) => Ok((
            StatusCode::ACCEPTED,
            Json(MessageView::new(message, Vec::new())),
        )),
        // The same request again: nothing new queued, and the message as it is now, as
        // `GET /v1/messages/{id}` shows it.
        ports::Enqueued::Existing(message) => {
            let attempts = services.message_attempts(message.id).await?;
            Ok((StatusCode::OK, Json(MessageView::new(message, attempts))))
        }
    }
}

/// A message, its status and every attempt to send it.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = "default", description = "An error; an unknown id is a 404",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let id: MessageId = parse_id(&id, "message")?;
    let (message, attempts) = services
        .message(&api_key, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no message with id `{id}`")))?;
    Ok(Json(MessageView::new(message, attempts)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    status: Option<MessageStatus>,
    /// The destination in E.164; write the `+` as `%2B`.
    to: Option<String>,
    /// Created at or after (RFC 3339, or a period before now: `30m`, `24h`, `7d`).
    #[param(value_type = Option<String>)]
    since: Option<QueryTime>,
    /// Created before (RFC 3339, or a period before now).
    #[param(value_type = Option<String>)]
    until: Option<QueryTime>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Messages per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// This API key's messages, newest first, with their attempts, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "list_messages",
    tag = "messages",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = "default", description = "An error, naming the parameter when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = page_limit(params.limit, "messages")?;
    let to = params.to.map(|to| parse_to_filter(&to)).transpose()?;
    let before = params.cursor.as_deref().map(message_cursor).transpose()?;
    let filter = MessageFilter {
        api_key: Some(api_key),
        status: params.status,
        to,
        since: params.since.map(|since| since.at(services.now())),
        until: params.until.map(|until| until.at(services.now())),
        before,
        // One more than the page, to know whether another page follows.
        limit: limit + 1,
    };
    let messages = services.list_messages(&filter).await?;
    Ok(Json(MessagePage::new(messages, limit)))
}

impl MessagePage {
    /// A page of at most `limit` messages from `messages`, read with a limit of `limit + 1`:
    /// the one more says that another page follows.
    pub fn new(mut messages: Vec<(Message, Vec<Attempt>)>, limit: u32) -> Self {
        let next_cursor = next_page(&mut messages, limit, |(message, _)| {
            encode_cursor(message.created_at, message.id)
        });
        Self {
            messages: messages
                .into_iter()
                .map(|(message, attempts)| MessageView::new(message, attempts))
                .collect(),
            next_cursor,
        }
    }
}

/// How many rows a page holds: `limit`, 1 to 100, default 50.
pub(super) fn page_limit(limit: Option<u32>, rows: &str) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "invalid-limit",
            format!("a page holds 1 to {MAX_PAGE} {rows}"),
        ));
    }
    Ok(limit)
}

/// The `to` of a list's query, where an unencoded `+` arrives as a space.
pub(super) fn parse_to_filter(to: &str) -> Result<PhoneNumber, ApiError> {
    match to.strip_prefix(' ') {
        Some(rest) => parse_phone_number("to", &format!("+{rest}")),
        None => parse_phone_number("to", to),
    }
}

/// Cuts `rows`, read with a limit of `limit + 1`, to the page, and answers the cursor of the
/// next page when the one more row said that another follows.
pub(super) fn next_page<T>(
    rows: &mut Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor_of)
}

/// Opaque to clients: the position of the last row of a page.
pub(super) fn encode_cursor(created_at: DateTime<Utc>, id: impl std::fmt::Display) -> String {
    let raw = format!("{}.{id}", created_at.timestamp_micros());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Reads a message list's `next_cursor` (`GET /v1/messages`, `sms-notify messages list`).
pub fn message_cursor(text: &str) -> Result<MessageCursor, ApiError> {
    let (created_at, id) = decode_cursor(text)?;
    Ok(MessageCursor { created_at, id })
}

/// Reads a `next_cursor`; a cursor that is not one is the `cursor` field's problem.
pub(super) fn decode_cursor<Id: std::str::FromStr>(
    text: &str,
) -> Result<(DateTime<Utc>, Id), ApiError> {
    let invalid = || {
        ApiError::invalid_field(
            "cursor",
            "invalid-cursor",
            "pass a `next_cursor` from an earlier page, unchanged",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
    let created_at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((created_at, id.parse().map_err(|_| invalid())?))
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
