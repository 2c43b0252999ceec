//! Rows as PostgreSQL returns them, and their conversion to domain values. A row that does not
//! convert is [`StoreError::Corrupt`]: the database holds something the domain never wrote.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use domain::{
    Attempt, AttemptOutcome, Channel, CodeHash, Message, MessageId, MessageStatus, PhoneNumber,
    Price, Priority, Verification, VerificationId, VerificationStatus,
};
use ports::{ClaimToken, ClaimedMessage, StoreError};
use uuid::Uuid;

/// A sqlx failure as the port sees it: a value that does not decode is corrupt data, anything
/// else is the database being unavailable.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(error.to_string()),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

pub(crate) fn corrupt(column: &str, problem: impl Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {problem}"))
}

/// A price is stored as two columns that a CHECK keeps both set or both null.
pub(crate) fn price(amount: Option<String>, currency: Option<String>) -> Option<Price> {
    Some(Price {
        amount: amount?,
        currency: currency?,
    })
}

fn count(column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(column, format!("{value} is not a count")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: Uuid,
    to: String,
    channel: String,
    template: Option<String>,
    body: String,
    sensitive: bool,
    segments: i64,
    priority: i16,
    status: String,
    api_key: String,
    idempotency_key: Option<String>,
    idempotency_fingerprint: Option<String>,
    verification_id: Option<Uuid>,
    send_before: Option<DateTime<Utc>>,
    provider: Option<String>,
    provider_sid: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    price_amount: Option<String>,
    price_currency: Option<String>,
    attempt_count: i64,
    request_id: Option<String>,
    next_attempt_at: DateTime<Utc>,
    claim_token: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        Ok(Message {
            id: MessageId::from_uuid(row.id),
            to: PhoneNumber::from_stored(&row.to).map_err(|error| corrupt("messages.to", error))?,
            channel: row
                .channel
                .parse::<Channel>()
                .map_err(|error| corrupt("messages.channel", error))?,
            template: row.template,
            body: row.body,
            sensitive: row.sensitive,
            segments: count("messages.segments", row.segments)?,
            priority: Priority::from_rank(row.priority),
            status: row
                .status
                .parse::<MessageStatus>()
                .map_err(|error| corrupt("messages.status", error))?,
            api_key: row.api_key,
            idempotency_key: row.idempotency_key,
            idempotency_fingerprint: row.idempotency_fingerprint,
            verification_id: row.verification_id.map(VerificationId::from_uuid),
            send_before: row.send_before,
            provider: row.provider,
            provider_sid: row.provider_sid,
            error_code: row.error_code,
            error_message: row.error_message,
            price: price(row.price_amount, row.price_currency),
            attempt_count: count("messages.attempt_count", row.attempt_count)?,
            request_id: row.request_id,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl TryFrom<MessageRow> for ClaimedMessage {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        let token = row
            .claim_token
            .ok_or_else(|| corrupt("messages.claim_token", "a claimed message has no token"))?;
        let message = Message::try_from(row)?;
        Ok(ClaimedMessage {
            // A claim stamps `updated_at` with its time; a sender rate may set a later one.
            send_at: message.updated_at,
            message,
            claim: ClaimToken(token.as_u128()),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    number: i64,
    provider: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    outcome: String,
    http_status: Option<i32>,
    error_code: Option<String>,
    error_message: Option<String>,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;

    fn try_from(row: AttemptRow) -> Result<Self, StoreError> {
        Ok(Attempt {
            number: count("message_attempts.number", row.number)?,
            provider: row.provider,
            started_at: row.started_at,
            finished_at: row.finished_at,
            outcome: row
                .outcome
                .parse::<AttemptOutcome>()
                .map_err(|error| corrupt("message_attempts.outcome", error))?,
            http_status: row
                .http_status
                .map(|status| {
                    u16::try_from(status).map_err(|_| {
                        corrupt(
                            "message_attempts.http_status",
                            format!("{status} is not an HTTP status"),
                        )
                    })
                })
                .transpose()?,
            error_code: row.error_code,
            error_message: row.error_message,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct VerificationRow {
    id: Uuid,
    to: String,
    channel: String,
    api_key: String,
    status: String,
    check_count: i64,
    max_checks: i64,
    send_count: i64,
    max_sends: i64,
    expires_at: DateTime<Utc>,
    last_sent_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl TryFrom<VerificationRow> for Verification {
    type Error = StoreError;

    fn try_from(row: VerificationRow) -> Result<Self, StoreError> {
        Ok(Verification {
            id: VerificationId::from_uuid(row.id),
            to: PhoneNumber::from_stored(&row.to)
                .map_err(|error| corrupt("verifications.to", error))?,
            channel: row
                .channel
                .parse::<Channel>()
                .map_err(|error| corrupt("verifications.channel", error))?,
            api_key: row.api_key,
            status: row
                .status
                .parse::<VerificationStatus>()
                .map_err(|error| corrupt("verifications.status", error))?,
            check_count: count("verifications.check_count", row.check_count)?,
            max_checks: count("verifications.max_checks", row.max_checks)?,
            send_count: count("verifications.send_count", row.send_count)?,
            max_sends: count("verifications.max_sends", row.max_sends)?,
            expires_at: row.expires_at,
            last_sent_at: row.last_sent_at,
            created_at: row.created_at,
        })
    }
}

pub(crate) fn code_hashes(hashes: Vec<Vec<u8>>) -> Vec<CodeHash> {
    hashes.into_iter().map(CodeHash::from_bytes).collect()
}
