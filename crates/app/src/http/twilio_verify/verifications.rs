//! `/v2/Services/{ServiceSid}/Verifications` and `/VerificationCheck`: start (or resend),
//! fetch, cancel or approve, and check, through the same use cases as `/v1`, answered in
//! Twilio's shapes and with Twilio's error codes.
//!
//! What Twilio does and this service does differently, which clients cannot tell apart or are
//! told plainly: a resend sends a new code and keeps the earlier ones valid (Twilio resends the
//! same code); `Channel=call` is a voice call, refused as not offered without a provider that
//! places calls; `RateLimits` (buckets defined through an API this service does not serve) and
//! `CustomCode` are refused rather than ignored, since ignoring them would weaken what the
//! client relies on. PSD2's `Amount` and `Payee` are taken on any service (Twilio asks for a
//! PSD2-enabled one) and bound to the code as `/v1`'s `amount`, `currency` and `payee` are;
//! Twilio's `Amount` is one string, so its currency is read from it (see [`twilio_amount`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{
    Brand, Channel, CheckOutcome, CheckRefusal, PhoneNumber, Transaction, Verification,
    VerificationCode, VerificationId, VerificationStatus,
};
use ports::VerificationFilter;
use serde_json::{json, Value};

use super::services::service_of;
use super::wire::{code, TwilioClient, TwilioError, TwilioForm};
use super::{base_url, parse_sid, sid, twilio_time};
use crate::usecases::fraud::{ClientSignals, FraudRefusal};
use crate::usecases::guards::{whole_seconds, LimitScope, Refusal};
use crate::usecases::verify::{CancelError, CheckError, StartError, StartRequest};
use crate::usecases::verify_compat::MAX_FRIENDLY_NAME;
use crate::Services;

/// A verification as Twilio answers it (`verify.v2.service.verification`). Unlike `/v1`, the
/// number is shown whole, as Twilio shows it: the client sent it.
fn verification_resource(
    verification: &Verification,
    service_sid: &str,
    account_sid: &str,
    base: &str,
    now: DateTime<Utc>,
) -> Value {
    let status = verification.status_at(now);
    let verification_sid = sid("VE", verification.id.as_uuid());
    // The first code went at creation and the latest at `last_sent_at`; the times of those in
    // between are not kept.
    let attempts: Vec<Value> = (0..verification.send_count)
        .map(|index| {
            let time = if index + 1 == verification.send_count {
                Some(verification.last_sent_at)
            } else if index == 0 {
                Some(verification.created_at)
            } else {
                None
            };
            json!({"channel": twilio_channel(verification.channel), "time": time.map(twilio_time)})
        })
        .collect();
    json!({
        "sid": verification_sid,
        "service_sid": service_sid,
        "account_sid": account_sid,
        "to": verification.to.as_str(),
        "channel": twilio_channel(verification.channel),
        "status": status.as_str(),
        "valid": status == VerificationStatus::Approved,
        "lookup": null,
        "amount": verification.transaction.as_ref().map(amount_text),
        "payee": verification.transaction.as_ref().map(|t| t.payee.as_str()),
        "send_code_attempts": attempts,
        "date_created": twilio_time(verification.created_at),
        "date_updated": twilio_time(verification.last_sent_at.max(verification.created_at)),
        "sna": null,
        "url": format!("{base}/v2/Services/{service_sid}/Verifications/{verification_sid}"),
    })
}

/// Twilio's name of a channel: a call is `call`.
fn twilio_channel(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Whatsapp => "whatsapp",
        Channel::Voice => "call",
    }
}

/// The channel Twilio's `Channel` names, if this service offers it.
fn channel(name: &str) -> Result<Channel, TwilioError> {
    match name {
        "sms" => Ok(Channel::Sms),
        "whatsapp" => Ok(Channel::Whatsapp),
        // Refused when it starts if no provider places calls (`TWILIO_VOICE_FROM`).
        "call" => Ok(Channel::Voice),
        "email" | "sna" | "auto" | "rbm" => Err(TwilioError::invalid_parameter(
            "Channel",
            format!("the channel `{name}` is not offered by this service; use sms or whatsapp"),
        )),
        other => Err(TwilioError::invalid_parameter(
            "Channel",
            format!("unknown channel `{other}`"),
        )),
    }
}

/// Refuses a parameter this service does not honour, when it is given.
fn refuse_if_given(form: &TwilioForm, name: &str, why: &str) -> Result<(), TwilioError> {
    match form.get(name) {
        Some(_) => Err(TwilioError::invalid_parameter(name, why)),
        None => Ok(()),
    }
}

/// The currencies Twilio's `Amount` may name by their sign. `$` is taken as US dollars, as
/// Twilio, a US company, writes them; other dollars are written with their code (`100 CAD`).
const CURRENCY_SIGNS: &[(&str, &str)] = &[("€", "EUR"), ("£", "GBP"), ("$", "USD")];

/// Twilio's `Amount` (free text such as `€39.99`, as Twilio's PSD2 guide writes it) as a
/// number and a currency: a sign or an ISO 4217 code before or after the number (`€39.99`,
/// `39.99 EUR`, `EUR 39.99`), or a bare number, which is in euros: PSD2 is a European
/// directive and Vonage's PSD2 amounts are euros too. The number itself is judged by
/// `Transaction::parse`.
fn twilio_amount(text: &str) -> (String, String) {
    let text = text.trim();
    for (sign, currency) in CURRENCY_SIGNS {
        if let Some(number) = text.strip_prefix(sign).or_else(|| text.strip_suffix(sign)) {
            return (number.trim().to_owned(), (*currency).to_owned());
        }
    }
    let is_code = |part: &str| part.len() == 3 && part.chars().all(|c| c.is_ascii_alphabetic());
    let split = text
        .get(..3)
        .filter(|code| is_code(code))
        .map(|code| (code, &text[3..]))
        .or_else(|| {
            let at = text.len().checked_sub(3)?;
            text.get(at..)
                .filter(|code| is_code(code))
                .map(|code| (code, &text[..at]))
        });
    match split {
        Some((code, number)) => (number.trim().to_owned(), code.to_ascii_uppercase()),
        None => (text.to_owned(), "EUR".to_owned()),
    }
}

/// A transaction's amount as Twilio shows one: with its sign when it has one (`€39.99`),
/// else followed by its code (`100.00 CHF`).
fn amount_text(transaction: &Transaction) -> String {
    let currency = transaction.currency.as_str();
    match CURRENCY_SIGNS.iter().find(|(_, code)| *code == currency) {
        Some((sign, _)) => format!("{sign}{}", transaction.amount),
        None => format!("{} {currency}", transaction.amount),
    }
}

/// PSD2's `Amount` and `Payee`, both or neither, as the transaction the code confirms: a
/// start's is named by the code's text and bound to its hash, a check's must be that one.
fn transaction(form: &TwilioForm) -> Result<Option<Transaction>, TwilioError> {
    let (amount, payee) = match (form.get("Amount"), form.get("Payee")) {
        (None, None) => return Ok(None),
        (Some(amount), Some(payee)) => (amount, payee),
        _ => {
            return Err(TwilioError::new(
                StatusCode::BAD_REQUEST,
                code::PSD2_PARAMETERS_REQUIRED,
                "'Amount' & 'Payee' params are required together",
            ))
        }
    };
    let (number, currency) = twilio_amount(amount);
    Transaction::parse(Some(&number), Some(&currency), Some(payee)).map_err(|error| {
        let name = match error.field() {
            "payee" => "Payee",
            _ => "Amount",
        };
        TwilioError::invalid_parameter(name, error)
    })
}

fn phone_number(name: &str, text: &str) -> Result<PhoneNumber, TwilioError> {
    PhoneNumber::parse(text).map_err(|error| TwilioError::invalid_parameter(name, error))
}

/// A language tag, as `/v1` accepts one.
fn locale(form: &TwilioForm) -> Result<Option<String>, TwilioError> {
    let Some(locale) = form.get("Locale") else {
        return Ok(None);
    };
    let valid = locale.len() <= 16
        && locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(TwilioError::invalid_parameter(
            "Locale",
            "a locale is a language tag such as `fr` or `pt-BR`",
        ));
    }
    Ok(Some(locale.to_owned()))
}

/// A start the use case refused, as Twilio answers it.
fn start_error(error: StartError) -> TwilioError {
    match error {
        StartError::TooSoon { retry_after } => TwilioError::too_many(
            code::TOO_MANY_REQUESTS,
            format!("Too many requests: {error}"),
            whole_seconds(retry_after),
        ),
        StartError::TooManySends => {
            TwilioError::too_many(code::MAX_SEND_ATTEMPTS, "Max send attempts reached", 60)
        }
        StartError::ChannelNotOffered { .. } | StartError::ChannelCannotCarryTransaction { .. } => {
            TwilioError::invalid_parameter("Channel", &error)
        }
        StartError::Refused(refusal) => refusal_error(refusal),
        // A fraud block is answered as Twilio's Fraud Guard answers one.
        StartError::Fraud(refusal) => {
            let retry_after = match &refusal {
                FraudRefusal::Blocked { retry_after, .. } => retry_after.map(whole_seconds),
                FraudRefusal::BudgetExhausted { retry_after, .. } => {
                    Some(whole_seconds(*retry_after))
                }
                FraudRefusal::LineType { .. } => None,
            };
            TwilioError {
                retry_after_seconds: retry_after.map(|seconds| seconds.max(1)),
                ..TwilioError::new(
                    StatusCode::FORBIDDEN,
                    code::DELIVERY_BLOCKED,
                    refusal.to_string(),
                )
            }
        }
        StartError::Render(error) => TwilioError::internal(&error),
        StartError::Store(error) => error.into(),
    }
}

/// A guard's refusal, as Twilio answers it.
fn refusal_error(refusal: Refusal) -> TwilioError {
    let message = refusal.to_string();
    let retry_after = refusal.retry_after().map(whole_seconds).unwrap_or_default();
    match refusal {
        Refusal::CountryNotAllowed(_) => {
            TwilioError::new(StatusCode::FORBIDDEN, code::GEO_BLOCKED, message)
        }
        Refusal::RateLimited {
            scope: LimitScope::Number,
            ..
        } => TwilioError::too_many(
            code::MAX_SEND_ATTEMPTS,
            format!("Max send attempts reached: {message}"),
            retry_after,
        ),
        Refusal::RateLimited {
            scope: LimitScope::ApiKey,
            ..
        } => TwilioError::too_many(code::TOO_MANY_REQUESTS, message, retry_after),
        Refusal::Store(error) => error.into(),
    }
}

/// The brand a code's text names, as Twilio Verify names it: the request's
/// `CustomFriendlyName`, else the service's friendly name. A name the texts cannot carry (over
/// 20 characters: every text must still fit one segment) leaves the configured brand.
fn brand(form: &TwilioForm, friendly_name: &str) -> Option<Brand> {
    let name = form
        .get("CustomFriendlyName")
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(friendly_name);
    Brand::parse(name.trim()).ok()
}

/// `POST /v2/Services/{ServiceSid}/Verifications`: sends a code, or a new one for the pending
/// verification of the same number (a resend). 201 either way, as Twilio answers.
pub async fn start(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Path(service_sid): Path<String>,
    uri: Uri,
    form: TwilioForm,
) -> Result<(StatusCode, Json<Value>), TwilioError> {
    let service = service_of(&services, &client, &service_sid, uri.path()).await?;
    let to = phone_number("To", form.required("To")?)?;
    let channel = channel(form.required("Channel")?)?;
    let locale = locale(&form)?;
    if let Some(name) = form.get("CustomFriendlyName") {
        if name.chars().count() > MAX_FRIENDLY_NAME {
            return Err(TwilioError::invalid_parameter(
                "CustomFriendlyName",
                format!("at most {MAX_FRIENDLY_NAME} characters"),
            ));
        }
    }
    let transaction = transaction(&form)?;
    refuse_if_given(
        &form,
        "RateLimits",
        "rate limit buckets are not offered; this service's own limits per number and per \
         account apply",
    )?;
    refuse_if_given(
        &form,
        "CustomCode",
        "custom codes are not offered: this service generates every code",
    )?;
    let started = services
        .start_verification(
            &client.api_key,
            StartRequest {
                to,
                channel,
                locale,
                code_length: Some(service.code_length),
                app_hash: None,
                client: ClientSignals::default(),
                brand: brand(&form, &service.friendly_name),
                workflow: None,
                transaction,
            },
        )
        .await
        .map_err(start_error)?;
    Ok((
        StatusCode::CREATED,
        Json(verification_resource(
            &started.verification,
            &sid("VA", service.id),
            &client.account_sid,
            &base_url(&services, &headers),
            services.now(),
        )),
    ))
}

/// The verification a path's `Sid` names, if it is one.
fn verification_id(text: &str) -> Option<VerificationId> {
    parse_sid("VE", text).map(VerificationId::from_uuid)
}

/// `GET /v2/Services/{ServiceSid}/Verifications/{Sid}`. As in Twilio Verify, a verification
/// that was approved, canceled or has expired is no longer found.
pub async fn fetch(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Path((service_sid, verification_sid)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<Value>, TwilioError> {
    let service = service_of(&services, &client, &service_sid, uri.path()).await?;
    let id =
        verification_id(&verification_sid).ok_or_else(|| TwilioError::not_found(uri.path()))?;
    let now = services.now();
    let verification = services
        .verification(&client.api_key, id)
        .await?
        .filter(|verification| {
            matches!(
                verification.status_at(now),
                VerificationStatus::Pending | VerificationStatus::MaxAttemptsReached
            )
        })
        .ok_or_else(|| TwilioError::not_found(uri.path()))?;
    Ok(Json(verification_resource(
        &verification,
        &sid("VA", service.id),
        &client.account_sid,
        &base_url(&services, &headers),
        now,
    )))
}

/// `POST /v2/Services/{ServiceSid}/Verifications/{Sid}` with `Status=canceled` or
/// `Status=approved`: ends a pending verification; one that has ended is not found.
pub async fn update(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Path((service_sid, verification_sid)): Path<(String, String)>,
    uri: Uri,
    form: TwilioForm,
) -> Result<Json<Value>, TwilioError> {
    let service = service_of(&services, &client, &service_sid, uri.path()).await?;
    let status = form.required("Status")?;
    let id =
        verification_id(&verification_sid).ok_or_else(|| TwilioError::not_found(uri.path()))?;
    let updated = match status {
        "canceled" => services.cancel_verification(&client.api_key, id).await,
        "approved" => services.approve_verification(&client.api_key, id).await,
        _ => {
            return Err(TwilioError::invalid_parameter(
                "Status",
                "expected canceled or approved",
            ))
        }
    };
    let verification = updated.map_err(|error| match error {
        CancelError::NotFound | CancelError::Ended(_) => TwilioError::not_found(uri.path()),
        CancelError::Store(error) => error.into(),
    })?;
    Ok(Json(verification_resource(
        &verification,
        &sid("VA", service.id),
        &client.account_sid,
        &base_url(&services, &headers),
        services.now(),
    )))
}

/// The pending verification of `to` started by this account's API key.
async fn pending_of(
    services: &Services,
    api_key: &str,
    to: PhoneNumber,
) -> Result<Option<VerificationId>, TwilioError> {
    let filter = VerificationFilter {
        api_key: Some(api_key.to_owned()),
        status: Some(VerificationStatus::Pending),
        to: Some(to),
        since: None,
        until: None,
        before: None,
        limit: 1,
        now: services.now(),
    };
    let pending = services.list_verifications(&filter).await?;
    Ok(pending.first().map(|verification| verification.id))
}

/// `POST /v2/Services/{ServiceSid}/VerificationCheck`: checks `Code` against the verification
/// `VerificationSid`, or the pending one of `To`. A wrong code answers `pending` with
/// `valid: false`; a verification that takes no more checks answers Twilio's errors: 20404
/// once approved, canceled or expired, 60202 once its checks are used up.
pub async fn check(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    Path(service_sid): Path<String>,
    uri: Uri,
    form: TwilioForm,
) -> Result<Json<Value>, TwilioError> {
    let service = service_of(&services, &client, &service_sid, uri.path()).await?;
    let code = VerificationCode::parse(form.required("Code")?.trim())
        .map_err(|error| TwilioError::invalid_parameter("Code", error))?;
    let transaction = transaction(&form)?;
    let not_found = || TwilioError::not_found(uri.path());
    let id = match (form.get("VerificationSid"), form.get("To")) {
        (Some(verification_sid), _) => verification_id(verification_sid).ok_or_else(not_found)?,
        (None, Some(to)) => pending_of(&services, &client.api_key, phone_number("To", to)?)
            .await?
            .ok_or_else(not_found)?,
        (None, None) => {
            return Err(TwilioError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMETER,
                "Either a 'To' number or 'VerificationSid' must be specified",
            ))
        }
    };
    let outcome = services
        .check_transaction_verification(&client.api_key, id, &code, transaction.as_ref())
        .await
        .map_err(|error| check_error(error, &not_found))?;
    let verification = services
        .verification(&client.api_key, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(check_resource(
        &verification,
        outcome,
        &sid("VA", service.id),
        &client.account_sid,
        services.now(),
    )))
}

fn check_error(error: CheckError, not_found: &dyn Fn() -> TwilioError) -> TwilioError {
    match error {
        CheckError::NotFound | CheckError::Refused(CheckRefusal::Ended(_)) => not_found(),
        CheckError::Refused(CheckRefusal::MaxAttemptsReached) => TwilioError::new(
            StatusCode::TOO_MANY_REQUESTS,
            code::MAX_CHECK_ATTEMPTS,
            "Max check attempts reached",
        ),
        CheckError::Store(error) => error.into(),
    }
}

/// A check's answer as Twilio gives it (`verify.v2.service.verification_check`): the status
/// and validity are this check's outcome.
fn check_resource(
    verification: &Verification,
    outcome: CheckOutcome,
    service_sid: &str,
    account_sid: &str,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "sid": sid("VE", verification.id.as_uuid()),
        "service_sid": service_sid,
        "account_sid": account_sid,
        "to": verification.to.as_str(),
        "channel": twilio_channel(verification.channel),
        "status": outcome.status.as_str(),
        "valid": outcome.valid,
        "amount": verification.transaction.as_ref().map(amount_text),
        "payee": verification.transaction.as_ref().map(|t| t.payee.as_str()),
        "date_created": twilio_time(verification.created_at),
        "date_updated": twilio_time(now),
        "sna_attempts_error_codes": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_the_voice_channel_and_channels_not_offered_are_invalid_parameters() {
        assert_eq!(channel("sms").unwrap(), Channel::Sms);
        assert_eq!(channel("whatsapp").unwrap(), Channel::Whatsapp);
        assert_eq!(channel("call").unwrap(), Channel::Voice);
        assert_eq!(twilio_channel(Channel::Voice), "call");
        let email = channel("email").unwrap_err();
        assert_eq!((email.status, email.code), (StatusCode::BAD_REQUEST, 60200));
        assert!(
            email.message.contains("`email` is not offered"),
            "{}",
            email.message
        );
        assert_eq!(channel("fax").unwrap_err().code, 60200);
    }

    #[test]
    fn the_guards_refusals_answer_twilios_codes() {
        let per_number = refusal_error(Refusal::RateLimited {
            scope: LimitScope::Number,
            retry_after: chrono::TimeDelta::seconds(90),
        });
        assert_eq!((per_number.status.as_u16(), per_number.code), (429, 60203));
        assert_eq!(per_number.retry_after_seconds, Some(90));
        let per_key = refusal_error(Refusal::RateLimited {
            scope: LimitScope::ApiKey,
            retry_after: chrono::TimeDelta::seconds(5),
        });
        assert_eq!((per_key.status.as_u16(), per_key.code), (429, 20429));
        let blocked = start_error(StartError::Fraud(FraudRefusal::Blocked {
            decision: domain::fraud::Decision::allow(),
            retry_after: Some(chrono::TimeDelta::hours(12)),
        }));
        assert_eq!((blocked.status.as_u16(), blocked.code), (403, 60410));
        assert_eq!(blocked.retry_after_seconds, Some(12 * 3600));
        let sends = start_error(StartError::TooManySends);
        assert_eq!((sends.status.as_u16(), sends.code), (429, 60203));
    }

    #[test]
    fn twilios_amount_names_its_currency_by_sign_or_code_or_is_in_euros() {
        let read = |text: &str| {
            let (number, currency) = twilio_amount(text);
            (number, currency)
        };
        let pair = |number: &str, currency: &str| (number.to_owned(), currency.to_owned());
        assert_eq!(read("€39.99"), pair("39.99", "EUR"));
        assert_eq!(read("39.99 €"), pair("39.99", "EUR"));
        assert_eq!(read("£5"), pair("5", "GBP"));
        assert_eq!(read("$10.00"), pair("10.00", "USD"));
        assert_eq!(read("CHF 120.50"), pair("120.50", "CHF"));
        assert_eq!(read("120.50 sek"), pair("120.50", "SEK"));
        assert_eq!(read("39.99"), pair("39.99", "EUR"));
    }

    #[test]
    fn psd2_amount_and_payee_come_together_and_are_judged_as_in_v1() {
        assert_eq!(
            transaction(&TwilioForm::parse(b"Amount=&Payee=")).unwrap(),
            None
        );
        let both = transaction(&TwilioForm::parse(
            b"Amount=%E2%82%AC39.990&Payee=Acme+Inc.",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            both,
            Transaction::parse(Some("39.99"), Some("EUR"), Some("Acme Inc."))
                .unwrap()
                .unwrap()
        );
        assert_eq!(amount_text(&both), "€39.990");
        for alone in [&b"Amount=%E2%82%AC39.99"[..], b"Payee=Acme"] {
            let error = transaction(&TwilioForm::parse(alone)).unwrap_err();
            assert_eq!((error.code, error.status.as_u16()), (60206, 400));
        }
        let negative = transaction(&TwilioForm::parse(b"Amount=-5&Payee=Acme")).unwrap_err();
        assert_eq!((negative.code, negative.status.as_u16()), (60200, 400));
        assert!(
            negative.message.contains("`Amount`"),
            "{}",
            negative.message
        );
        let long = transaction(&TwilioForm::parse(
            b"Amount=5&Payee=A+payee+name+far+too+long+for+a+text",
        ))
        .unwrap_err();
        assert!(long.message.contains("`Payee`"), "{}", long.message);
    }
}
