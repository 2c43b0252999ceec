//! What the stores bind to their statements, worked out once for every store: each function
//! lists a statement's parameters in order (`$1`, `$2`, ...) as domain values, and each store
//! binds a [`Param`] in its own encoding (its time and id formats).

use chrono::{DateTime, Utc};
use domain::fraud::{Action, Block, Mode, Policy, Prefix, Reason};
use domain::webhook::EventType;
use domain::{
    Attempt, DeliveryEvent, MessageId, MessageStatus, NewMessage, Verification, VerificationId,
    VerificationStatus,
};
use uuid::Uuid;

use crate::{
    DecisionFilter, LoggedDecision, MessageFilter, SafeEntry, UsageQuery, VerificationFilter,
    VerifyService, WebhookEndpoint,
};

/// One parameter of a statement; `None` binds NULL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    Text(Option<&'a str>),
    Integer(Option<i64>),
    Flag(bool),
    Id(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
}

impl<'a> Param<'a> {
    pub fn text(value: &'a str) -> Self {
        Param::Text(Some(value))
    }

    pub fn id(id: Uuid) -> Self {
        Param::Id(Some(id))
    }

    pub fn time(at: DateTime<Utc>) -> Self {
        Param::Time(Some(at))
    }

    pub fn count(value: u32) -> Self {
        Param::Integer(Some(i64::from(value)))
    }
}

/// A page of the message list: `api_key`, `status`, `to`, `since`, `until`, the cursor's
/// `created_at` and `id`, `limit`.
pub fn message_filter(filter: &MessageFilter) -> [Param<'_>; 8] {
    [
        Param::Text(filter.api_key.as_deref()),
        Param::Text(filter.status.map(MessageStatus::as_str)),
        Param::Text(filter.to.as_ref().map(|to| to.as_str())),
        Param::Time(filter.since),
        Param::Time(filter.until),
        Param::Time(filter.before.map(|cursor| cursor.created_at)),
        Param::Id(filter.before.map(|cursor| cursor.id.as_uuid())),
        Param::count(filter.limit),
    ]
}

/// The conditions of [`message_filter`]'s parameters that `filter` sets, joined by `AND`: a
/// statement for each combination rather than one of optional conditions (`$3 IS NULL OR "to" =
/// $3`), whose generic plan cannot use the index a set condition has (a search by number would
/// read every row of its period instead of the number's).
pub fn message_conditions(filter: &MessageFilter) -> String {
    list_conditions(
        filter.api_key.is_some(),
        filter.status.map(|_| "status = $2"),
        filter.to.is_some(),
        filter.since.is_some(),
        filter.until.is_some(),
        filter.before.is_some(),
    )
}

/// As [`message_conditions`], for [`verification_filter`]'s parameters: a pending verification
/// past its expiry is found by the status `expired`.
pub fn verification_conditions(filter: &VerificationFilter) -> String {
    list_conditions(
        filter.api_key.is_some(),
        filter.status.map(|_| {
            "$2 = CASE WHEN status = 'pending' AND expires_at <= $9 THEN 'expired' ELSE status END"
        }),
        filter.to.is_some(),
        filter.since.is_some(),
        filter.until.is_some(),
        filter.before.is_some(),
    )
}

fn list_conditions(
    api_key: bool,
    status: Option<&str>,
    to: bool,
    since: bool,
    until: bool,
    before: bool,
) -> String {
    let conditions: Vec<&str> = [
        api_key.then_some("api_key = $1"),
        status,
        to.then_some(r#""to" = $3"#),
        since.then_some("created_at >= $4"),
        until.then_some("created_at < $5"),
        before.then_some("(created_at, id) < ($6, $7)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if conditions.is_empty() {
        "TRUE".to_owned()
    } else {
        conditions.join(" AND ")
    }
}

/// A page of the verification list: as [`message_filter`], then `now`.
pub fn verification_filter(filter: &VerificationFilter) -> [Param<'_>; 9] {
    [
        Param::Text(filter.api_key.as_deref()),
        Param::Text(filter.status.map(VerificationStatus::as_str)),
        Param::Text(filter.to.as_ref().map(|to| to.as_str())),
        Param::Time(filter.since),
        Param::Time(filter.until),
        Param::Time(filter.before.map(|cursor| cursor.created_at)),
        Param::Id(filter.before.map(|cursor| cursor.id.as_uuid())),
        Param::count(filter.limit),
        Param::time(filter.now),
    ]
}

/// The messages a report covers: `since`, `until`, `api_key`.
pub fn usage_range(query: &UsageQuery) -> [Param<'_>; 3] {
    [
        Param::time(query.since),
        Param::time(query.until),
        Param::Text(query.api_key.as_deref()),
    ]
}

/// A delivery event applied to a message: its `id`, `status`, `error_code`, `error_message`,
/// `price_amount`, `price_currency`, `received_at`, `idempotency_token`.
pub fn delivery<'a>(
    id: MessageId,
    event: &'a DeliveryEvent,
    idempotency_token: Option<&'a str>,
) -> [Param<'a>; 8] {
    [
        Param::id(id.as_uuid()),
        Param::text(event.status.as_str()),
        Param::Text(event.error_code.as_deref()),
        Param::Text(event.error_message.as_deref()),
        Param::Text(event.price.as_ref().map(|price| price.amount.as_str())),
        Param::Text(event.price.as_ref().map(|price| price.currency.as_str())),
        Param::time(event.received_at),
        Param::Text(idempotency_token),
    ]
}

/// Messages still `sent` through a provider to claim for a status lookup: `provider`,
/// `sent_after`, `sent_before`, `now`, `limit`, `hold_until`.
pub fn unconfirmed(
    provider: &str,
    (sent_after, sent_before): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    limit: u32,
    hold_until: DateTime<Utc>,
) -> [Param<'_>; 6] {
    [
        Param::text(provider),
        Param::time(sent_after),
        Param::time(sent_before),
        Param::time(now),
        Param::count(limit),
        Param::time(hold_until),
    ]
}

/// A new `queued` message that carries a code of `verification_id` when it has one: `id`,
/// `to`, `channel`, `template`, `body`, `segments`, `priority`, `api_key`, `idempotency_key`,
/// `verification_id`, `send_before`, `created_at`, `country`, `request_id`, `sensitive`,
/// `idempotency_fingerprint`, `locale`, `content_sid`, `traceparent`. `country` is the number's ([`domain::PhoneNumber::country`]),
/// which the caller keeps while the parameters are bound.
pub fn new_message<'a>(
    message: &'a NewMessage,
    verification_id: Option<VerificationId>,
    country: Option<&'a str>,
) -> [Param<'a>; 19] {
    [
        Param::Id(Some(message.id.as_uuid())),
        Param::text(message.to.as_str()),
        Param::text(message.channel.as_str()),
        Param::Text(message.template.as_deref()),
        Param::text(&message.body),
        Param::count(message.segments),
        Param::Integer(Some(i64::from(message.priority.rank()))),
        Param::text(&message.api_key),
        Param::Text(message.idempotency_key.as_deref()),
        Param::Id(verification_id.map(|id| id.as_uuid())),
        Param::Time(message.send_before),
        Param::time(message.created_at),
        Param::Text(country),
        Param::Text(message.request_id.as_deref()),
        Param::Flag(message.sensitive),
        Param::Text(message.idempotency_fingerprint.as_deref()),
        Param::Text(message.locale.as_deref()),
        Param::Text(message.content_sid.as_deref()),
        Param::Text(message.traceparent.as_deref()),
    ]
}

/// A new verification: `id`, `to`, `channel`, `api_key`, `status`, `check_count`,
/// `max_checks`, `send_count`, `max_sends`, `expires_at`, `last_sent_at`, `created_at`, `risk`
/// ([`risk_json`] of its risk), then its transaction's `amount`, `currency`, `payee`.
pub fn new_verification<'a>(
    verification: &'a Verification,
    risk: Option<&'a str>,
) -> [Param<'a>; 16] {
    let transaction = verification.transaction.as_ref();
    [
        Param::Id(Some(verification.id.as_uuid())),
        Param::text(verification.to.as_str()),
        Param::text(verification.channel.as_str()),
        Param::text(&verification.api_key),
        Param::text(verification.status.as_str()),
        Param::count(verification.check_count),
        Param::count(verification.max_checks),
        Param::count(verification.send_count),
        Param::count(verification.max_sends),
        Param::time(verification.expires_at),
        Param::time(verification.last_sent_at),
        Param::time(verification.created_at),
        Param::Text(risk),
        Param::Text(transaction.map(|t| t.amount.as_str())),
        Param::Text(transaction.map(|t| t.currency.as_str())),
        Param::Text(transaction.map(|t| t.payee.as_str())),
    ]
}

/// A verification's risk as stored: the JSON `{action, reasons}` of the guard's decision.
pub fn risk_json(verification: &Verification) -> Option<String> {
    verification
        .risk
        .as_ref()
        .and_then(|risk| serde_json::to_string(risk).ok())
}

/// An attempt of message `id`: `id`, `number`, `started_at`, `finished_at`, `outcome`,
/// `http_status`, `error_code`, `error_message`, `provider`, `traceparent`.
pub fn attempt(id: MessageId, attempt: &Attempt) -> [Param<'_>; 10] {
    [
        Param::id(id.as_uuid()),
        Param::count(attempt.number),
        Param::time(attempt.started_at),
        Param::time(attempt.finished_at),
        Param::text(attempt.outcome.as_str()),
        Param::Integer(attempt.http_status.map(i64::from)),
        Param::Text(attempt.error_code.as_deref()),
        Param::Text(attempt.error_message.as_deref()),
        Param::Text(attempt.provider.as_deref()),
        Param::Text(attempt.traceparent.as_deref()),
    ]
}

/// Names the domain fixes (statuses) as a list of SQL literals, `'failed', 'undelivered'`, for
/// a statement that spells them out: they are never input, so they are safe to write in.
pub fn literals(names: impl IntoIterator<Item = &'static str>) -> String {
    names
        .into_iter()
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reasons as the stores keep them: a JSON array of `{code, detail}`, which the caller keeps
/// while the parameters are bound.
pub fn reasons_json(reasons: &[Reason]) -> String {
    serde_json::to_string(reasons).unwrap_or_else(|_| "[]".to_owned())
}

/// A block: `prefix`, `reasons` ([`reasons_json`] of its reasons), `codes`, `created_at`,
/// `renewed_at`, `expires_at`, `manual`.
pub fn block<'a>(block: &'a Block, reasons: &'a str) -> [Param<'a>; 7] {
    [
        Param::text(block.prefix.as_str()),
        Param::text(reasons),
        Param::Integer(Some(i64::try_from(block.codes).unwrap_or(i64::MAX))),
        Param::time(block.created_at),
        Param::time(block.renewed_at),
        Param::Time(block.expires_at),
        Param::Flag(block.is_manual()),
    ]
}

/// A block's renewal: `prefix`, `codes`, `renewed_at`, `expires_at`.
pub fn renewal(block: &Block) -> [Param<'_>; 4] {
    [
        Param::text(block.prefix.as_str()),
        Param::Integer(Some(i64::try_from(block.codes).unwrap_or(i64::MAX))),
        Param::time(block.renewed_at),
        Param::Time(block.expires_at),
    ]
}

/// A prefix lifted at a time: `prefix`, `now`.
pub fn prefix_at(prefix: &Prefix, now: DateTime<Utc>) -> [Param<'_>; 2] {
    [Param::text(prefix.as_str()), Param::time(now)]
}

/// A safe-list entry: `prefix`, `note`, `added_at`.
pub fn safe_entry(entry: &SafeEntry) -> [Param<'_>; 3] {
    [
        Param::text(entry.prefix.as_str()),
        Param::Text(entry.note.as_deref()),
        Param::time(entry.added_at),
    ]
}

/// A policy's mode set at run time: `policy`, `mode`, `updated_at`.
pub fn policy_mode(policy: Policy, mode: Mode, now: DateTime<Utc>) -> [Param<'static>; 3] {
    [
        Param::text(policy.as_str()),
        Param::text(mode.as_str()),
        Param::time(now),
    ]
}

/// A logged decision: `id`, `at`, `to`, `api_key`, `client_ip`, `verification_id`, `action`,
/// `reasons` ([`reasons_json`] of its reasons), `user_id`, `trusted`.
pub fn logged_decision<'a>(entry: &'a LoggedDecision, reasons: &'a str) -> [Param<'a>; 10] {
    [
        Param::id(entry.id),
        Param::time(entry.at),
        Param::text(entry.to.as_str()),
        Param::text(&entry.api_key),
        Param::Text(entry.client_ip.as_deref()),
        Param::Id(entry.verification_id.map(|id| id.as_uuid())),
        Param::text(entry.decision.action.as_str()),
        Param::text(reasons),
        Param::Text(entry.user_id.as_deref()),
        Param::Flag(entry.trusted),
    ]
}

/// A page of the decision log: `action`, `since`, `until`, the cursor's `at` and `id`, `limit`.
pub fn decision_filter(filter: &DecisionFilter) -> [Param<'_>; 6] {
    [
        Param::Text(filter.action.map(Action::as_str)),
        Param::Time(filter.since),
        Param::Time(filter.until),
        Param::Time(filter.before.map(|cursor| cursor.at)),
        Param::Id(filter.before.map(|cursor| cursor.id)),
        Param::count(filter.limit),
    ]
}

/// A Verify service: `id`, `account_sid`, `friendly_name`, `code_length`, `created_at`,
/// `updated_at`.
pub fn verify_service(service: &VerifyService) -> [Param<'_>; 6] {
    [
        Param::id(service.id),
        Param::text(&service.account_sid),
        Param::text(&service.friendly_name),
        Param::Integer(Some(i64::from(service.code_length.digits()))),
        Param::time(service.created_at),
        Param::time(service.updated_at),
    ]
}

/// A Verify service's new settings: `id`, `account_sid`, `friendly_name`, `code_length`,
/// `updated_at`.
pub fn verify_service_settings(service: &VerifyService) -> [Param<'_>; 5] {
    let [id, account_sid, friendly_name, code_length, _, updated_at] = verify_service(service);
    [id, account_sid, friendly_name, code_length, updated_at]
}

/// Event types as `webhook_endpoints.events` keeps them: space-separated between spaces
/// (` message.sent verification.approved `), so that a statement finds one with `LIKE`.
pub fn event_types(events: &[EventType]) -> String {
    let mut text = String::from(" ");
    for kind in events {
        text.push_str(kind.as_str());
        text.push(' ');
    }
    text
}

/// An endpoint's row: `id`, `api_key`, `url`, `description`, `events`, `secret`,
/// `previous_secret`, `previous_secret_until`, `enabled`, `disabled_reason`, `failing_since`,
/// `created_at`, `updated_at`.
pub fn webhook_endpoint<'a>(endpoint: &'a WebhookEndpoint, events: &'a str) -> [Param<'a>; 13] {
    [
        Param::id(endpoint.id.as_uuid()),
        Param::text(&endpoint.api_key),
        Param::text(&endpoint.url),
        Param::Text(endpoint.description.as_deref()),
        Param::text(events),
        Param::text(&endpoint.secret),
        Param::Text(endpoint.previous_secret.as_deref()),
        Param::Time(endpoint.previous_secret_until),
        Param::Flag(endpoint.enabled),
        Param::Text(endpoint.disabled_reason.as_deref()),
        Param::Time(endpoint.failing_since),
        Param::time(endpoint.created_at),
        Param::time(endpoint.updated_at),
    ]
}

/// A workflow's repeated request as its stores keep it: JSON (a struct of strings, which
/// always serializes).
pub fn step_request_json(request: &domain::StepRequest) -> String {
    serde_json::to_string(request).unwrap_or_else(|_| "{}".to_owned())
}
