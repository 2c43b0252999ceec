//! `POST /v1/webhooks/twilio/status`: Twilio reports what became of a message. No API key:
//! the `X-Twilio-Signature` proves the sender, and nothing changes without it.

use std::sync::Arc;

use adapters_twilio::{parse_status_callback, validate_signature, StatusCallbackError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use ports::DeliveryUpdate;

use super::ApiError;
use crate::Services;

const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Twilio's id for one report, the same on each retry of it.
const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

/// Checks the signature, then applies the reported status as the status machine allows. A
/// report about a message we do not know is answered 200 all the same: refusing it would only
/// make Twilio report an error on every retry of something no retry can fix.
#[utoipa::path(
    post,
    path = "/v1/webhooks/twilio/status",
    tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's status callback form (MessageSid, MessageStatus, ErrorCode, ...)"),
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the request")),
    responses(
        (status = 200, description = "Recorded, or about a message this service does not know"),
        (status = "default", description = "An error; a missing or invalid signature is a 403",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn twilio_status(
    State(services): State<Arc<Services>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Some(callbacks) = services.twilio_status_callbacks() else {
        return Err(ApiError::not_found(
            "status callbacks are off: they need Twilio credentials and PUBLIC_BASE_URL",
        ));
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    // Twilio signs the URL it was given (our `StatusCallback`), which a proxy in front of us may
    // have rewritten on the way in: only the query is taken from the request.
    let mut signed_url = callbacks.url.clone();
    signed_url.set_query(uri.query());
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !validate_signature(
        &callbacks.auth_token,
        signed_url.as_str(),
        &params,
        signature,
    ) {
        tracing::warn!("status callback refused: missing or invalid X-Twilio-Signature");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid-signature",
            "Invalid signature",
            "X-Twilio-Signature does not sign this request with the account's auth token",
        )
        .with_field("X-Twilio-Signature"));
    }

    let callback = parse_status_callback(&params, services.now()).map_err(|error| {
        let field = match &error {
            StatusCallbackError::MissingField(name) => name,
            StatusCallbackError::UnknownStatus(_) | StatusCallbackError::InboundStatus(_) => {
                "MessageStatus"
            }
            StatusCallbackError::InvalidTo => "To",
        };
        tracing::warn!(%error, "signed status callback unreadable");
        ApiError::invalid_field(field, "invalid-status-callback", error.to_string())
    })?;
    let to = callback.to.as_ref().map(|number| number.masked());
    let status = callback.event.status;
    let idempotency_token = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    match services
        .record_delivery(&callback.message_sid, callback.event, idempotency_token)
        .await?
    {
        DeliveryUpdate::Applied(message) => tracing::info!(
            message_id = %message.id,
            twilio_sid = %callback.message_sid,
            to = to.as_deref(),
            %status,
            error_code = message.error_code.as_deref(),
            "delivery status recorded"
        ),
        DeliveryUpdate::Ignored(message) => tracing::info!(
            message_id = %message.id,
            twilio_sid = %callback.message_sid,
            %status,
            current = %message.status,
            "delivery status ignored: the message is already past it"
        ),
        DeliveryUpdate::Duplicate(message) => tracing::info!(
            message_id = %message.id,
            twilio_sid = %callback.message_sid,
            %status,
            "delivery status ignored: this report was applied before"
        ),
        DeliveryUpdate::UnknownMessage => tracing::warn!(
            twilio_sid = %callback.message_sid,
            to = to.as_deref(),
            %status,
            "status callback for a message we do not know"
        ),
    }
    Ok(StatusCode::OK)
}
