//! `DELETE /v1/numbers/{e164}`: a phone number's owner asked for their data to be erased
//! (admin keys only: it reaches every API key's messages). Answers what was erased, per kind.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::fraud::AdminClient;
use super::messages::parse_phone_number;
use super::ApiError;
use crate::usecases::erasure::Erasure;
use crate::Services;

/// Rows erased, per kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedCounts {
    pub messages: u64,
    /// The messages' send attempts.
    pub attempts: u64,
    /// The messages' delivery reports.
    pub delivery_events: u64,
    pub verifications: u64,
    /// The verifications' code hashes.
    pub verification_codes: u64,
    /// The fraud guard's decisions about the number.
    pub fraud_decisions: u64,
}

/// What an erasure did. The usage report keeps counting the erased messages (without the
/// number).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    /// The number, masked.
    #[schema(example = "+1555***4567")]
    pub to: String,
    /// Verifications that were pending, canceled before they were erased.
    pub canceled_verifications: u64,
    pub erased: ErasedCounts,
}

impl ErasureView {
    pub fn new(to: String, erasure: Erasure) -> Self {
        let removed = erasure.removed;
        Self {
            to,
            canceled_verifications: erasure.canceled_verifications,
            erased: ErasedCounts {
                messages: removed.messages,
                attempts: removed.attempts,
                delivery_events: removed.delivery_events,
                verifications: removed.verifications,
                verification_codes: removed.verification_codes,
                fraud_decisions: removed.fraud_decisions,
            },
        }
    }
}

/// Erases every message, attempt, delivery report, verification (pending ones canceled first)
/// and fraud decision to the number, of every API key. Queued messages are never sent. Erasing
/// a number with nothing stored answers zeros.
#[utoipa::path(
    delete,
    path = "/v1/numbers/{e164}",
    operation_id = "erase_number",
    tag = "data",
    security(("api_key" = [])),
    params(("e164" = String, Path, description = "The number in E.164 (`+15551234567`; `%2B` for `+` also reads)")),
    responses(
        (status = 200, description = "Erased; what, per kind", body = ErasureView),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Not a phone number (`invalid-phone-number`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn erase(
    State(services): State<Arc<Services>>,
    admin: AdminClient,
    Path(e164): Path<String>,
) -> Result<Json<ErasureView>, ApiError> {
    let number = parse_phone_number("e164", &e164)?;
    let erasure = services.erase_number(&admin.name, &number).await?;
    Ok(Json(ErasureView::new(number.masked(), erasure)))
}
