//! Client webhooks' routes (`/v1/webhook-endpoints`): endpoints registered per API key, their
//! secrets rotated, events replayed; and each event's `data`, the object as this API shows it.
//! Not Twilio's status callbacks, which `webhooks` receives.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::webhook::{EndpointId, EventType};
use domain::{Attempt, Message, Verification};
use ports::{LoggedDecision, StoredEvent, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiClient, ApiJson};
use super::messages::MessageView;
use super::verifications::{RiskView, VerificationView};
use super::{parse_id, ApiError};
use crate::usecases::events::{Caller, EndpointChanges, EndpointError, NewEndpoint};
use crate::Services;

/// What an event's `data` is made from.
pub enum EventObject {
    Message(Box<Message>, Vec<Attempt>),
    Verification(Verification),
    Decision(LoggedDecision),
    /// Deleted since (retention): the data names only its id.
    Gone,
}

/// An event's `data`: the object as the API shows it, with what may have changed since the
/// event (status, error, price) as it was then. Never a code.
pub fn event_data(event: &StoredEvent, object: EventObject) -> serde_json::Value {
    let rendered = match object {
        EventObject::Message(mut message, attempts) => {
            if let Some(status) = event.status.as_deref().and_then(|s| s.parse().ok()) {
                message.status = status;
            }
            message.error_code = event.error_code.clone();
            message.error_message = event.error_message.clone();
            message.price = event.price.clone().or(message.price);
            message.updated_at = event.created_at;
            // Attempts after the event (none once a message has left the queue) are left out.
            let attempts = attempts
                .into_iter()
                .filter(|attempt| attempt.started_at <= event.created_at)
                .collect();
            serde_json::to_value(MessageView::new(*message, attempts))
        }
        EventObject::Verification(verification) => {
            let status = event
                .status
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(verification.status);
            let view = VerificationView::at_event(&verification, status);
            serde_json::to_value(view).map(|mut value| {
                let fallback = event
                    .detail
                    .as_deref()
                    .and_then(|detail| serde_json::from_str::<serde_json::Value>(detail).ok());
                if let (Some(fallback), Some(fields)) = (fallback, value.as_object_mut()) {
                    fields.insert("fallback".into(), fallback);
                }
                value
            })
        }
        EventObject::Decision(decision) => Ok(serde_json::json!({
            "id": decision.id,
            "status": "blocked",
            "to": decision.to.masked(),
            "verification_id": decision.verification_id,
            "risk": RiskView::from(&decision.decision),
            "created_at": decision.at,
        })),
        EventObject::Gone => Ok(serde_json::json!({ "id": event.object_id })),
    };
    rendered.unwrap_or_else(|_| serde_json::json!({ "id": event.object_id }))
}

/// A webhook endpoint, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    #[schema(value_type = String, format = Uuid)]
    id: EndpointId,
    url: String,
    description: Option<String>,
    /// The event types sent to it.
    #[schema(value_type = Vec<String>, example = json!(["verification.approved", "message.delivered"]))]
    events: Vec<EventType>,
    /// A disabled endpoint gets nothing until enabled again (`PATCH` `{"enabled": true}`);
    /// its events are kept for a replay.
    enabled: bool,
    /// Why the service disabled it: `gone` (it answered 410) or `failing` (every delivery
    /// failed for 5 days).
    disabled_reason: Option<String>,
    /// Since when every delivery to it has failed.
    failing_since: Option<DateTime<Utc>>,
    /// The API key (name) whose events it receives.
    api_key: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        Self {
            id: endpoint.id,
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            events: endpoint.events.clone(),
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason.clone(),
            failing_since: endpoint.failing_since,
            api_key: endpoint.api_key.clone(),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// An endpoint with its signing secret: answered only when it is made or its secret rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecretView {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` and base64: verify each delivery's `webhook-signature` with it (Standard
    /// Webhooks). Shown once: keep it.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: String,
    /// After a rotation, when the previous secret stops signing beside this one.
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

impl From<&WebhookEndpoint> for EndpointWithSecretView {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        Self {
            endpoint: EndpointView::from(endpoint),
            secret: endpoint.secret.clone(),
            previous_secret_expires_at: endpoint.previous_secret_until,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    endpoints: Vec<EndpointView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointBody {
    /// Where events are posted: `https`, resolving to public addresses only (unless
    /// `WEBHOOK_ALLOW_PRIVATE=true`).
    #[schema(example = "https://auth.example.com/hooks/sms-notify")]
    url: String,
    /// The event types to send it: `verification.approved`, `verification.canceled`,
    /// `verification.expired`, `verification.max_attempts_reached`, `verification.blocked`,
    /// `verification.channel_fallback`, `message.sent`, `message.delivered`,
    /// `message.undelivered`, `message.failed`.
    #[schema(value_type = Vec<String>, example = json!(["verification.approved"]))]
    events: Vec<EventType>,
    description: Option<String>,
}

/// What to change; what is left out stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointBody {
    url: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    events: Option<Vec<EventType>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// `true` enables an endpoint again (after it was disabled for failing, or by a client).
    enabled: Option<bool>,
}

/// A field given, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Every event created at or after this time (RFC 3339) is sent again.
    #[schema(example = "2026-12-05T00:00:00Z")]
    since: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// How many events were queued to be sent again.
    queued: u64,
}

fn caller(client: &ApiClient) -> Caller<'_> {
    Caller {
        api_key: &client.name,
        is_admin: client.is_admin,
    }
}

impl From<EndpointError> for ApiError {
    fn from(error: EndpointError) -> Self {
        match &error {
            EndpointError::NotFound(_) => ApiError::not_found(error.to_string()),
            EndpointError::Url(refusal) => {
                ApiError::invalid_field("url", "invalid-webhook-url", refusal.to_string())
            }
            EndpointError::NoEvents => {
                ApiError::invalid_field("events", "invalid-field", error.to_string())
            }
            EndpointError::TooLong { field, .. } => {
                ApiError::invalid_field(field, "invalid-field", error.to_string())
            }
            EndpointError::Store(store) => ApiError::internal(store),
        }
    }
}

/// Registers an endpoint for the key's events. The answer holds the signing secret, shown
/// this once.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    security(("api_key" = [])),
    request_body = CreateEndpointBody,
    responses(
        (status = 201, description = "Registered, with its secret", body = EndpointWithSecretView),
        (status = 422, description = "A URL that is not https or not public \
            (`invalid-webhook-url`), or no events", body = ApiError,
            content_type = "application/problem+json"),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn create(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    ApiJson(body): ApiJson<CreateEndpointBody>,
) -> Result<(StatusCode, Json<EndpointWithSecretView>), ApiError> {
    let endpoint = services
        .create_webhook_endpoint(
            caller(&client),
            NewEndpoint {
                url: body.url,
                events: body.events,
                description: body.description,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecretView::from(&endpoint)),
    ))
}

/// The key's endpoints (an admin key: every key's), oldest first, without secrets.
#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints",
    tag = "webhooks",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(services): State<Arc<Services>>,
    client: ApiClient,
) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = services.webhook_endpoints(caller(&client)).await?;
    Ok(Json(EndpointList {
        endpoints: endpoints.iter().map(EndpointView::from).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/webhook-endpoints/{id}",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = "default", description = "An error; another key's endpoint is a 404",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    let endpoint = services.webhook_endpoint(caller(&client), id).await?;
    Ok(Json(EndpointView::from(&endpoint)))
}

#[utoipa::path(
    patch,
    path = "/v1/webhook-endpoints/{id}",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = UpdateEndpointBody,
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointView),
        (status = "default", description = "An error, naming the field when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn update(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateEndpointBody>,
) -> Result<Json<EndpointView>, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    let changes = EndpointChanges {
        url: body.url,
        events: body.events,
        description: body.description,
        enabled: body.enabled,
    };
    let endpoint = services
        .update_webhook_endpoint(caller(&client), id, changes)
        .await?;
    Ok(Json(EndpointView::from(&endpoint)))
}

#[utoipa::path(
    delete,
    path = "/v1/webhook-endpoints/{id}",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted, with its deliveries not yet made"),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn delete(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    services
        .delete_webhook_endpoint(caller(&client), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret. The previous one keeps signing beside it for 24 hours (two `v1,`
/// signatures in `webhook-signature`), so that clients switch without losing an event.
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/rotate-secret",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = EndpointWithSecretView),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn rotate_secret(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<EndpointWithSecretView>, ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    let endpoint = services.rotate_webhook_secret(caller(&client), id).await?;
    Ok(Json(EndpointWithSecretView::from(&endpoint)))
}

/// Sends again every event since a time that the endpoint receives (same `webhook-id`, so
/// that a client may tell a repeat).
#[utoipa::path(
    post,
    path = "/v1/webhook-endpoints/{id}/replay",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = ReplayBody,
    responses(
        (status = 202, description = "Queued to be sent again", body = ReplayView),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn replay(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<(StatusCode, Json<ReplayView>), ApiError> {
    let id = parse_id(&id, "webhook endpoint")?;
    let queued = services
        .replay_webhook_events(caller(&client), id, body.since)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayView { queued })))
}
