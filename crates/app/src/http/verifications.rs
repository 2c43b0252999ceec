//! The verification routes: start, get, list, check (by id and by number) and cancel, each
//! answer mapped to what Twilio Verify's clients expect.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use domain::fraud::{Action, Decision, ReasonCode};
use domain::{
    AppHash, Channel, CheckOutcome, CheckRefusal, CodeLength, InvalidWorkflow, MessageStatus,
    Transaction, Verification, VerificationAttempt, VerificationCode, VerificationId,
    VerificationStatus, WorkflowPlan,
};
use ports::{VerificationCursor, VerificationFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiClient, ApiJson, ApiQuery, QueryTime};
use super::messages::{
    decode_cursor, encode_cursor, next_page, page_limit, parse_phone_number, parse_to_filter,
};
use super::{parse_id, ApiError};
use crate::usecases::fraud::{ClientSignals, FraudRefusal};
use crate::usecases::guards::{whole_seconds, Refusal};
use crate::usecases::verify::{CancelError, CheckError, StartError, StartRequest};
use crate::Services;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The number to verify, in E.164 (`+15551234567`).
    to: String,
    /// `sms`, `whatsapp` (an approved template of `TWILIO_WHATSAPP_CONTENT_SIDS`) or `voice` (a
    /// call that speaks the code, from `TWILIO_VOICE_FROM`); a channel the service cannot send
    /// on is a 422 `channel-not-offered`.
    /// With `channels`, it may be left out, or must be their first.
    #[schema(default = "sms")]
    channel: Option<Channel>,
    /// A fallback workflow: the channels to try in turn (`["whatsapp", "sms", "voice"]`, each
    /// once). The next is used when the current step fails for good, its receipt says
    /// `undelivered`/`failed` (a call: busy or no answer), or no code approved within
    /// `fallback_after_seconds` of its send. Each step sends a code of its own; earlier codes
    /// stay valid. A channel the service cannot send on is a 422 naming it.
    channels: Option<Vec<Channel>>,
    /// Seconds each step of `channels` waits for an approval before the next: 15 to 600
    /// (default 60).
    #[schema(minimum = 15, maximum = 600, default = 60)]
    fallback_after_seconds: Option<i64>,
    /// A language tag (`fr`, `pt-BR`) choosing the code message's translation. Without it,
    /// the language of the number's country (`+33`: French), unless the operator turned that
    /// off; a locale without a translation falls back to its language (`fr-CA`: `fr`), then
    /// English.
    locale: Option<String>,
    /// Digits in the code, 4 to 10 (default 6).
    code_length: Option<i64>,
    /// An Android app's 11-character hash for the SMS Retriever API: the SMS ends with it
    /// (before the `@domain #code` line when the service has an autofill domain).
    #[schema(
        min_length = 11,
        max_length = 11,
        pattern = "^[A-Za-z0-9+/]{11}$",
        example = "FA+9qCX9VSu"
    )]
    app_hash: Option<String>,
    /// The address of the person asking for the code (IPv4 or IPv6), as the calling service
    /// saw it: codes asked for from one address, or one range (/24, /64), are limited.
    client_ip: Option<String>,
    /// The calling service's id of its user, named in the service's log lines of what the
    /// fraud guard found.
    user_id: Option<String>,
    /// The calling service vouches for a known user: the conversion policies (prefix
    /// conversion, prefix surge) do not judge the request; the other policies still do.
    #[serde(default)]
    trusted: bool,
    /// PSD2 transaction confirmation, with `currency` and `payee` (all three or none): the
    /// amount of the payment the code confirms, a decimal with at most 9 digits before the
    /// point and 4 after. The SMS or call names it; a check must present the same amount
    /// (compared as a number: `10.0` is `10.00`), currency and payee to approve. WhatsApp
    /// cannot carry it (422 `channel-cannot-carry-transaction`).
    #[schema(example = "49.90", pattern = r"^[0-9]{1,9}(\.[0-9]{1,4})?$")]
    amount: Option<String>,
    /// The amount's ISO 4217 currency: three upper-case letters.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// Who is paid, as the payer reads it in the code's text: 1 to 20 visible characters (so
    /// that every built-in text with it fits two SMS segments).
    #[schema(example = "Acme Travel", min_length = 1, max_length = 20)]
    payee: Option<String>,
}

/// A request's transaction, or the 422 naming the field that is wrong.
fn transaction(
    amount: Option<&str>,
    currency: Option<&str>,
    payee: Option<&str>,
) -> Result<Option<Transaction>, ApiError> {
    Transaction::parse(amount, currency, payee).map_err(|error| {
        let kind = match error.field() {
            "amount" => "invalid-amount",
            "currency" => "invalid-currency",
            _ => "invalid-payee",
        };
        ApiError::invalid_field(error.field(), kind, error.to_string())
    })
}

/// Longest `user_id` taken: an id, not a document.
const MAX_USER_ID_LEN: usize = 128;

/// One finding of the fraud guard.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReasonView {
    /// `prefix_low_conversion`, `prefix_surge`, `country_surge`, `line_type`, `ip_velocity`,
    /// `budget_exhausted` or `manual_block`.
    #[schema(value_type = String, example = "prefix_surge")]
    code: ReasonCode,
    /// What was found, in words an operator can act on.
    detail: String,
}

/// What the fraud guard decided: `allow` (nothing found), `monitor` (a watched policy found
/// something; the code went) or `block`, with each finding.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RiskView {
    #[schema(value_type = String, example = "allow")]
    action: Action,
    reasons: Vec<ReasonView>,
}

impl From<&Decision> for RiskView {
    fn from(decision: &Decision) -> Self {
        Self {
            action: decision.action,
            reasons: decision
                .reasons
                .iter()
                .map(|reason| ReasonView {
                    code: reason.code,
                    detail: reason.detail.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    code: String,
    /// For a verification that confirms a transaction (PSD2): its amount, compared as a
    /// number. Another amount, currency or payee, or none, is a wrong code (the check counts).
    #[schema(example = "49.90")]
    amount: Option<String>,
    #[schema(example = "EUR")]
    currency: Option<String>,
    #[schema(example = "Acme Travel")]
    payee: Option<String>,
}

/// A verification as clients see it: the number masked (the caller knows it; logs and
/// screenshots of responses need not), no code, no hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationView {
    #[schema(value_type = String, format = Uuid)]
    id: VerificationId,
    status: VerificationStatus,
    to: String,
    channel: Channel,
    expires_at: DateTime<Utc>,
    send_count: u32,
    created_at: DateTime<Utc>,
    /// The fraud guard's decision when the verification was started; absent for one started
    /// before the guard judged codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<RiskView>,
    /// The payment its codes confirm (PSD2), as the start request wrote the amount; absent
    /// for a verification that confirms none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "49.90")]
    amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "EUR")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Acme Travel")]
    payee: Option<String>,
    /// Every code sent, oldest first: the first, each workflow step, each resend (shown by
    /// `GET /v1/verifications/{id}` and when one is started or resent; not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<VerificationAttemptView>>,
}

/// One code sent for a verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationAttemptView {
    channel: Channel,
    /// The provider that accepted it (`twilio`, `vonage`); absent until one did.
    provider: Option<String>,
    /// When the provider accepted it; absent until then.
    sent_at: Option<DateTime<Utc>>,
    /// Its message's status, from the carrier's receipts (`queued`, `sent`, `delivered`,
    /// `undelivered`, `failed`, `expired`); for a call, `delivered` is answered.
    #[schema(value_type = String, example = "delivered")]
    status: MessageStatus,
    /// When its receipt said delivered.
    delivered_at: Option<DateTime<Utc>>,
    /// Whether its code is the one that approved the verification.
    approved: bool,
}

impl From<&VerificationAttempt> for VerificationAttemptView {
    fn from(attempt: &VerificationAttempt) -> Self {
        Self {
            channel: attempt.channel,
            provider: attempt.provider.clone(),
            sent_at: attempt.sent_at,
            status: attempt.status,
            delivered_at: attempt.delivered_at,
            approved: attempt.approved,
        }
    }
}

impl VerificationView {
    pub fn new(verification: &Verification, now: DateTime<Utc>) -> Self {
        let transaction = verification.transaction.as_ref();
        Self {
            id: verification.id,
            status: verification.status_at(now),
            to: verification.to.masked(),
            channel: verification.channel,
            expires_at: verification.expires_at,
            send_count: verification.send_count,
            created_at: verification.created_at,
            risk: verification.risk.as_ref().map(RiskView::from),
            amount: transaction.map(|t| t.amount.as_str().to_owned()),
            currency: transaction.map(|t| t.currency.as_str().to_owned()),
            payee: transaction.map(|t| t.payee.as_str().to_owned()),
            attempts: None,
        }
    }

    /// The view with the verification's attempts listed.
    pub fn with_attempts(self, attempts: &[VerificationAttempt]) -> Self {
        Self {
            attempts: Some(attempts.iter().map(VerificationAttemptView::from).collect()),
            ..self
        }
    }

    /// As it was when it took `status` (a webhook event's data): the status as stored, not
    /// as time has since made it.
    pub fn at_event(verification: &Verification, status: VerificationStatus) -> Self {
        Self {
            status,
            ..Self::new(verification, verification.created_at)
        }
    }
}

/// A verification just started or resent, and the language its code was sent in.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedView {
    #[serde(flatten)]
    verification: VerificationView,
    /// The locale of the translation the code was sent in (`fr` when `fr-CA` was asked for,
    /// `en` for a locale without a translation); null when the operator's own template without
    /// a locale was used.
    locale: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
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

/// Sends a one-time code to `to`. A pending verification of the same number is reused: it
/// gets a new code (the earlier ones stay valid), at most 5, 30 s apart.
#[utoipa::path(
    post,
    path = "/v1/verifications",
    tag = "verifications",
    security(("api_key" = [])),
    request_body = StartBody,
    responses(
        (status = 201, description = "Started: a code is on its way", body = StartedView),
        (status = 200, description = "A pending verification reused, with a new code",
            body = StartedView),
        (status = 429, description = "Too soon, too many codes (`rate-limited`), or blocked by \
            the fraud guard (`fraud-blocked`, with its `risk`); `Retry-After` when waiting helps",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "An invalid field, named; a line type the fraud guard \
            refuses is `line-type-refused`, with its `risk`",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "Another error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn start(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<StartedView>), ApiError> {
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
    let app_hash = body
        .app_hash
        .as_deref()
        .map(AppHash::parse)
        .transpose()
        .map_err(|error| {
            ApiError::invalid_field("app_hash", "invalid-app-hash", error.to_string())
        })?;
    let client_ip = body
        .client_ip
        .as_deref()
        .map(|text| {
            text.trim().parse::<IpAddr>().map_err(|_| {
                ApiError::invalid_field(
                    "client_ip",
                    "invalid-client-ip",
                    format!("`{text}` is not an IPv4 or IPv6 address"),
                )
            })
        })
        .transpose()?;
    if body
        .user_id
        .as_deref()
        .is_some_and(|id| id.is_empty() || id.len() > MAX_USER_ID_LEN)
    {
        return Err(ApiError::invalid_field(
            "user_id",
            "invalid-user-id",
            format!("a user id is 1 to {MAX_USER_ID_LEN} characters"),
        ));
    }
    let transaction = transaction(
        body.amount.as_deref(),
        body.currency.as_deref(),
        body.payee.as_deref(),
    )?;
    let (mut channel, mut workflow) =
        workflow_of(body.channel, body.channels, body.fallback_after_seconds)?;
    if let Some(plan) = workflow.take() {
        let plan = if transaction.is_some() {
            plan.for_transaction()
        } else {
            plan
        };
        channel = plan.first();
        workflow = Some(plan);
    }
    let has_workflow = workflow.is_some();
    let started = services
        .start_verification(
            &api_key,
            StartRequest {
                to,
                channel,
                workflow,
                locale: body.locale,
                code_length,
                app_hash,
                client: ClientSignals {
                    client_ip,
                    user_id: body.user_id,
                    trusted: body.trusted,
                },
                brand: None,
                transaction,
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
            StartError::ChannelNotOffered { .. } => ApiError::invalid_field(
                if has_workflow { "channels" } else { "channel" },
                "channel-not-offered",
                error.to_string(),
            ),
            StartError::ChannelCannotCarryTransaction { .. } => ApiError::invalid_field(
                "channel",
                "channel-cannot-carry-transaction",
                error.to_string(),
            ),
            StartError::Fraud(refusal) => fraud_problem(&refusal),
            StartError::Render(error) => ApiError::internal(&error),
            StartError::Store(error) => error.into(),
        })?;
    let (status, attempts) = if started.created {
        // The one code just queued: no need to read it back.
        let message = &started.message;
        let first = VerificationAttempt {
            message_id: message.id,
            channel: message.channel,
            provider: None,
            status: message.status,
            created_at: message.created_at,
            sent_at: None,
            delivered_at: None,
            approved: false,
        };
        (StatusCode::CREATED, vec![first])
    } else {
        let attempts = services
            .verification_attempts(started.verification.id)
            .await?;
        (StatusCode::OK, attempts)
    };
    Ok((
        status,
        Json(StartedView {
            verification: VerificationView::new(&started.verification, services.now())
                .with_attempts(&attempts),
            locale: started.locale().map(str::to_owned),
        }),
    ))
}

/// The first channel and the workflow a request asks for: `channel` alone (default `sms`) is
/// a one-step verification; `channels` a workflow, `channel` then its first or left out.
fn workflow_of(
    channel: Option<Channel>,
    channels: Option<Vec<Channel>>,
    fallback_after_seconds: Option<i64>,
) -> Result<(Channel, Option<WorkflowPlan>), ApiError> {
    let Some(channels) = channels else {
        if fallback_after_seconds.is_some() {
            return Err(ApiError::invalid_field(
                "fallback_after_seconds",
                "invalid-workflow",
                "fallback_after_seconds applies to a workflow: give channels too",
            ));
        }
        return Ok((channel.unwrap_or(Channel::Sms), None));
    };
    let plan = WorkflowPlan::new(
        channels,
        fallback_after_seconds.unwrap_or(WorkflowPlan::DEFAULT_FALLBACK_SECONDS),
    )
    .map_err(|error| {
        let field = match error {
            InvalidWorkflow::FallbackOutOfRange(_) => "fallback_after_seconds",
            InvalidWorkflow::Empty | InvalidWorkflow::Duplicate(_) => "channels",
        };
        ApiError::invalid_field(field, "invalid-workflow", error.to_string())
    })?;
    if let Some(channel) = channel.filter(|channel| *channel != plan.first()) {
        return Err(ApiError::invalid_field(
            "channel",
            "invalid-workflow",
            format!(
                "channel is {channel} but channels starts with {}: leave channel out, or make \
                 it the first of channels",
                plan.first()
            ),
        ));
    }
    Ok((plan.first(), Some(plan)))
}

/// A verification and its status.
#[utoipa::path(
    get,
    path = "/v1/verifications/{id}",
    operation_id = "get_verification",
    tag = "verifications",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = "default", description = "An error; an unknown id is a 404",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, ApiError> {
    let id: VerificationId = parse_id(&id, "verification")?;
    let verification = services
        .verification(&api_key, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verification with id `{id}`")))?;
    let attempts = services.verification_attempts(id).await?;
    Ok(Json(
        VerificationView::new(&verification, services.now()).with_attempts(&attempts),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// As `GET /v1/verifications/{id}` shows it: a pending one past its expiry is `expired`.
    status: Option<VerificationStatus>,
    /// The number in E.164; write the `+` as `%2B`.
    to: Option<String>,
    /// Started at or after (RFC 3339, or a period before now: `30m`, `24h`, `7d`).
    #[param(value_type = Option<String>)]
    since: Option<QueryTime>,
    /// Started before (RFC 3339, or a period before now).
    #[param(value_type = Option<String>)]
    until: Option<QueryTime>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Verifications per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationPage {
    verifications: Vec<VerificationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// This API key's verifications, newest first, a page at a time: the filters and cursor of
/// `GET /v1/messages`.
#[utoipa::path(
    get,
    path = "/v1/verifications",
    operation_id = "list_verifications",
    tag = "verifications",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of verifications", body = VerificationPage),
        (status = "default", description = "An error, naming the parameter when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn list(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<VerificationPage>, ApiError> {
    let limit = page_limit(params.limit, "verifications")?;
    let now = services.now();
    let filter = VerificationFilter {
        api_key: Some(api_key),
        status: params.status,
        to: params.to.map(|to| parse_to_filter(&to)).transpose()?,
        since: params.since.map(|since| since.at(now)),
        until: params.until.map(|until| until.at(now)),
        before: params
            .cursor
            .as_deref()
            .map(decode_cursor)
            .transpose()?
            .map(|(created_at, id)| VerificationCursor { created_at, id }),
        // One more than the page, to know whether another page follows.
        limit: limit + 1,
        now,
    };
    let mut verifications = services.list_verifications(&filter).await?;
    let next_cursor = next_page(&mut verifications, limit, |last| {
        encode_cursor(last.created_at, last.id)
    });
    Ok(Json(VerificationPage {
        verifications: verifications
            .iter()
            .map(|verification| VerificationView::new(verification, now))
            .collect(),
        next_cursor,
    }))
}

/// Checks a code the user typed: `approved` for the one check whose code approved it, else
/// `pending` with attempts left, or `max_attempts_reached` for the check that used the last
/// attempt. A verification that takes no more checks answers a problem, as in Twilio Verify.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/check",
    tag = "verifications",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The verification's id")),
    request_body = CheckBody,
    responses(
        (status = 200, description = "The outcome of a counted check", body = CheckView),
        (status = 404, description = "No such verification, or it is no longer pending (approved, \
            expired or canceled); `code` 20404, as in Twilio Verify",
            body = ApiError, content_type = "application/problem+json"),
        (status = 429, description = "Its checks are used up; `code` 60202, as in Twilio Verify",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "Another error; a code that is not 4 to 10 digits is a 422",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn check(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CheckBody>,
) -> Result<Json<CheckView>, ApiError> {
    let id: VerificationId = parse_id(&id, "verification")?;
    let code = VerificationCode::parse(body.code.trim())
        .map_err(|error| ApiError::invalid_field("code", "invalid-code", error.to_string()))?;
    let transaction = transaction(
        body.amount.as_deref(),
        body.currency.as_deref(),
        body.payee.as_deref(),
    )?;
    let checked = services
        .check_transaction_verification(&api_key, id, &code, transaction.as_ref())
        .await;
    check_answer(checked, || format!("no verification with id `{id}`"))
}

/// A check's answer: a counted check's outcome, or the problem of one the verification no
/// longer takes, which says nothing of how it ended (a client reading a refused check as an
/// approval would let any code in).
fn check_answer(
    checked: Result<CheckOutcome, CheckError>,
    not_found: impl FnOnce() -> String,
) -> Result<Json<CheckView>, ApiError> {
    match checked {
        Ok(outcome) => Ok(Json(outcome.into())),
        Err(CheckError::NotFound) => Err(ApiError::not_found(not_found()).with_twilio_code(20404)),
        Err(CheckError::Refused(refusal @ CheckRefusal::Ended(_))) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "verification-ended",
            "Verification ended",
            refusal.to_string(),
        )
        .with_twilio_code(20404)),
        Err(CheckError::Refused(refusal @ CheckRefusal::MaxAttemptsReached)) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "max-attempts-reached",
            "Max check attempts reached",
            refusal.to_string(),
        )
        .with_twilio_code(60202)),
        Err(CheckError::Store(error)) => Err(error.into()),
    }
}

fn refusal_problem(refusal: Refusal) -> ApiError {
    let detail = refusal.to_string();
    let retry_after = refusal.retry_after().map(whole_seconds).unwrap_or_default();
    match refusal {
        Refusal::CountryNotAllowed(_) => {
            ApiError::invalid_field("to", "country-not-allowed", detail)
        }
        Refusal::RateLimited { .. } => ApiError::too_many_requests(detail, retry_after),
        Refusal::Store(error) => error.into(),
    }
}

/// The fraud guard's refusal: a line type refused for good is a 422 naming it; a block is a
/// 429, with `Retry-After` when it heals by itself. Both carry the decision as `risk`.
pub(crate) fn fraud_problem(refusal: &FraudRefusal) -> ApiError {
    let risk = Some(Box::new(RiskView::from(refusal.decision())));
    match refusal {
        FraudRefusal::LineType { .. } => ApiError {
            title: "Line type refused",
            risk,
            ..ApiError::invalid_field("to", "line-type-refused", refusal.to_string())
        },
        FraudRefusal::Blocked { retry_after, .. } => {
            let blocked = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "fraud-blocked",
                "Blocked by the fraud guard",
                refusal.to_string(),
            );
            ApiError {
                retry_after_seconds: retry_after.map(|wait| whole_seconds(wait).max(1)),
                risk,
                ..blocked
            }
        }
        FraudRefusal::BudgetExhausted { retry_after, .. } => ApiError {
            retry_after_seconds: Some(whole_seconds(*retry_after).max(1)),
            risk,
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budget-exhausted",
                "Daily budget exhausted",
                refusal.to_string(),
            )
        },
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckByNumberBody {
    to: String,
    code: String,
    /// As in a check by id: the transaction the code confirms (PSD2).
    #[schema(example = "49.90")]
    amount: Option<String>,
    #[schema(example = "EUR")]
    currency: Option<String>,
    #[schema(example = "Acme Travel")]
    payee: Option<String>,
}

/// Checks a code against the pending verification of a number, as Twilio Verify's
/// VerificationCheck does; it answers as a check by id.
#[utoipa::path(
    post,
    path = "/v1/verification-checks",
    tag = "verifications",
    security(("api_key" = [])),
    request_body = CheckByNumberBody,
    responses(
        (status = 200, description = "The outcome of a counted check", body = CheckView),
        (status = 404, description = "No pending verification for the number (none started, or it \
            ended); `code` 20404, as in Twilio Verify",
            body = ApiError, content_type = "application/problem+json"),
        (status = 429, description = "Its checks are used up; `code` 60202, as in Twilio Verify",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "Another error; an invalid number or code is a 422",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn check_by_number(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
    ApiJson(body): ApiJson<CheckByNumberBody>,
) -> Result<Json<CheckView>, ApiError> {
    let to = parse_phone_number("to", &body.to)?;
    let code = VerificationCode::parse(body.code.trim())
        .map_err(|error| ApiError::invalid_field("code", "invalid-code", error.to_string()))?;
    let transaction = transaction(
        body.amount.as_deref(),
        body.currency.as_deref(),
        body.payee.as_deref(),
    )?;
    let checked = services
        .check_transaction_verification_of(&api_key, &to, &code, transaction.as_ref())
        .await;
    check_answer(checked, || {
        "no pending verification for this number".to_owned()
    })
}

/// Cancels a pending verification: its codes approve nothing and unsent ones are never sent.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/cancel",
    tag = "verifications",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The verification's id")),
    responses(
        (status = 200, description = "The canceled verification", body = VerificationView),
        (status = "default", description = "An error; an unknown id is a 404, one that ended otherwise a 409",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn cancel(
    State(services): State<Arc<Services>>,
    ApiClient { name: api_key, .. }: ApiClient,
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
    Ok(Json(VerificationView::new(&canceled, services.now())))
}
