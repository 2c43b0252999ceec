use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{
    Channel, CheckOutcome, CodeLength, Verification, VerificationCode, VerificationId,
    VerificationStatus,
};
use serde::{Deserialize, Serialize};

use super::extract::{ApiClient, ApiJson};
use super::messages::parse_phone_number;
use super::{parse_id, ApiError};
use crate::guards::{whole_seconds, Refusal};
use crate::verify::{CancelError, CheckError, StartError, StartRequest};
use crate::Services;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    to: String,
    #[serde(default = "default_channel")]
    channel: Channel,
    locale: Option<String>,
    code_length: Option<i64>,
}

fn default_channel() -> Channel {
    Channel::Sms
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    code: String,
}

/// A verification as clients see it: the number masked (the caller knows it; logs and
/// screenshots of responses need not), no code, no hash.
#[derive(Debug, Serialize)]
pub struct VerificationView {
    id: VerificationId,
    status: VerificationStatus,
    to: String,
    channel: Channel,
    expires_at: DateTime<Utc>,
    send_count: u32,
    created_at: DateTime<Utc>,
}

impl VerificationView {
    fn new(verification: &Verification, now: DateTime<Utc>) -> Self {
        Self {
            id: verification.id,
            status: verification.status_at(now),
            to: verification.to.masked(),
            channel: verification.channel,
            expires_at: verification.expires_at,
            send_count: verification.send_count,
            created_at: verification.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CheckView {
    status: VerificationStatus,
    valid: bool,
    attempts_left: u32,
}

impl From<CheckOutcome> for CheckView {
    fn from(outcome: CheckOutcome) -> Self {
        Self {
            status: outcome.status,
            valid: outcome.valid,
            attempts_left: outcome.attempts_left,
        }
    }
}

pub async fn start(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<VerificationView>), ApiError> {
    let to = parse_phone_number("to", &body.to)?;
    let code_length = body
        .code_length
        .map(CodeLength::new)
        .transpose()
        .map_err(|error| {
            ApiError::invalid_field("code_length", "invalid-code-length", error.to_string())
        })?;
    if let Some(locale) = &body.locale {
        let valid = !locale.is_empty()
            && locale.len() <= 16
            && locale
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ApiError::invalid_field(
                "locale",
                "invalid-locale",
                "a locale is a language tag such as `fr` or `pt-BR`",
            ));
        }
    }
    let started = services
        .start_verification(
            &api_key,
            StartRequest {
                to,
                channel: body.channel,
                locale: body.locale,
                code_length,
            },
        )
        .await
        .map_err(|error| match error {
            StartError::TooSoon { retry_after } => ApiError::too_many_requests(
                error.to_string(),
                u64::try_from(retry_after.num_seconds()).unwrap_or(1),
            ),
            StartError::TooManySends => ApiError::too_many_requests(error.to_string(), 60),
            StartError::Refused(refusal) => refusal_problem(refusal),
            StartError::Render(error) => ApiError::internal(&error),
            StartError::Store(error) => error.into(),
        })?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(VerificationView::new(
            &started.verification,
            services.clock.now(),
        )),
    ))
}

pub async fn get(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, ApiError> {
    let id: VerificationId = parse_id(&id, "verification")?;
    let verification = services
        .verification(&api_key, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verification with id `{id}`")))?;
    Ok(Json(VerificationView::new(
        &verification,
        services.clock.now(),
    )))
}

pub async fn check(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<CheckView>, ApiError> {
    let id: VerificationId = parse_id(&id, "verification")?;
    let code = VerificationCode::parse(body.code.trim())
        .map_err(|error| ApiError::invalid_field("code", "invalid-code", error.to_string()))?;
    let outcome = services
        .check_verification(&api_key, id, &code)
        .await
        .map_err(|error| match error {
            CheckError::NotFound => ApiError::not_found(format!("no verification with id `{id}`")),
            CheckError::Store(error) => error.into(),
        })?;
    Ok(Json(outcome.into()))
}

fn refusal_problem(refusal: Refusal) -> ApiError {
    let detail = refusal.to_string();
    let retry_after = refusal.retry_after().map(whole_seconds).unwrap_or_default();
    match refusal {
        Refusal::CountryNotAllowed(_) => {
            ApiError::invalid_field("to", "country-not-allowed", detail)
        }
        Refusal::RateLimited { .. } => ApiError::too_many_requests(detail, retry_after),
        Refusal::DestinationPaused { .. } => ApiError {
            kind: "destination-paused",
            ..ApiError::too_many_requests(detail, retry_after)
        },
        Refusal::Store(error) => error.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckByNumberBody {
    to: String,
    code: String,
}

/// `POST /v1/verification-checks`: checks a code against the pending verification of a
/// number, as Twilio Verify's VerificationCheck does.
pub async fn check_by_number(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    ApiJson(body): ApiJson<CheckByNumberBody>,
) -> Result<Json<CheckView>, ApiError> {
    let to = parse_phone_number("to", &body.to)?;
    let code = VerificationCode::parse(body.code.trim())
        .map_err(|error| ApiError::invalid_field("code", "invalid-code", error.to_string()))?;
    let outcome = services
        .check_verification_of(&api_key, &to, &code)
        .await
        .map_err(|error| match error {
            CheckError::NotFound => ApiError::not_found("no pending verification for this number"),
            CheckError::Store(error) => error.into(),
        })?;
    Ok(Json(outcome.into()))
}

/// `POST /v1/verifications/{id}/cancel`.
pub async fn cancel(
    State(services): State<Arc<Services>>,
    ApiClient(api_key): ApiClient,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, ApiError> {
    let id: VerificationId = parse_id(&id, "verification")?;
    let canceled =
        services
            .cancel_verification(&api_key, id)
            .await
            .map_err(|error| match error {
                CancelError::NotFound => {
                    ApiError::not_found(format!("no verification with id `{id}`"))
                }
                CancelError::Ended(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    "verification-ended",
                    "Verification ended",
                    error.to_string(),
                ),
                CancelError::Store(error) => error.into(),
            })?;
    Ok(Json(VerificationView::new(&canceled, services.clock.now())))
}
