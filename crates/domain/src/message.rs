//! A message, its status machine, and the record of each attempt to send it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Channel, PhoneNumber, Price, VerificationId};

crate::id::uuid_id!(MessageId);

/// Where a message is in its life. Only the moves [`MessageStatus::can_transition_to`] allows
/// ever happen, so a late or repeated event cannot move a message backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Stored and waiting for the dispatcher (first try or a retry).
    Queued,
    /// Claimed by a dispatcher and handed to the provider.
    Sending,
    /// Accepted by the provider.
    Sent,
    Delivered,
    Undelivered,
    Failed,
    /// A one-time code that could no longer be used by the time it could be sent.
    Expired,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Failed,
        MessageStatus::Expired,
    ];

    /// The statuses a report counts as delivered, and as not delivered (by the carrier or by
    /// us): a delivery rate is delivered / (delivered + not delivered), the share of messages
    /// with a final carrier outcome that arrived.
    pub const DELIVERED: [MessageStatus; 1] = [MessageStatus::Delivered];
    pub const NOT_DELIVERED: [MessageStatus; 2] =
        [MessageStatus::Failed, MessageStatus::Undelivered];

    /// The statuses of a message a provider accepted, whatever the carrier did with it since:
    /// a code sent, as the conversion report counts it.
    pub const ACCEPTED: [MessageStatus; 3] = [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Failed => "failed",
            MessageStatus::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Undelivered
                | MessageStatus::Failed
                | MessageStatus::Expired
        )
    }

    /// `Sending -> Queued` is the one step back, and only the dispatcher takes it: a retry, or a
    /// claim released at shutdown.
    pub fn can_transition_to(self, next: MessageStatus) -> bool {
        use MessageStatus::*;
        matches!(
            (self, next),
            (Queued, Sending | Failed | Expired)
                | (Sending, Queued | Sent | Failed | Expired)
                | (Sent, Delivered | Undelivered | Failed)
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for MessageStatus {
    type Err = UnknownStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| UnknownStatus(value.to_owned()))
    }
}

/// Dispatch order: one-time codes go before everything else, because a user is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Normal,
    Verification,
}

impl Priority {
    /// Stored as a number so that the queue index can order by it, higher first.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Normal => 0,
            Priority::Verification => 10,
        }
    }

    pub fn from_rank(rank: i16) -> Self {
        if rank >= Priority::Verification.rank() {
            Priority::Verification
        } else {
            Priority::Normal
        }
    }
}

/// What the API accepted and the store must keep before answering.
#[derive(Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub to: PhoneNumber,
    pub channel: Channel,
    pub template: Option<String>,
    pub body: String,
    /// The language the text is in, when one was chosen for it (`fr`, `pt-BR`): a call speaks
    /// it in that language.
    pub locale: Option<String>,
    /// An approved template the provider holds (Twilio's Content SID, `HX...`) that carries the
    /// message instead of a free text: the body then holds its variables as JSON
    /// (`{"1":"123456"}`). WhatsApp sends a business-initiated message only this way.
    pub content_sid: Option<String>,
    /// The body holds a secret (a code): see [`Message::sensitive`].
    pub sensitive: bool,
    pub segments: u32,
    pub priority: Priority,
    /// Name of the API key that asked for it (never the key itself).
    pub api_key: String,
    pub idempotency_key: Option<String>,
    /// A digest of the request that took the idempotency key, so that the key reused with
    /// another request is told apart from a retry of the same one.
    pub idempotency_fingerprint: Option<String>,
    pub verification_id: Option<VerificationId>,
    /// A message not sent by then is `expired` instead (one-time codes).
    pub send_before: Option<DateTime<Utc>>,
    /// The `X-Request-Id` of the API request that queued it, so that the dispatcher's logs of
    /// the send, on whatever instance, can be joined with the request's.
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the span that queued it (the API request's), so that its sends
    /// continue that trace on whatever instance; `None` when traces are not exported.
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Debug leaves out the body, which may hold a one-time code.
impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .field("sensitive", &self.sensitive)
            .field("verification_id", &self.verification_id)
            .finish_non_exhaustive()
    }
}

impl NewMessage {
    /// The message as the queue holds it once stored: no attempt yet, due at once.
    pub fn into_queued(self) -> Message {
        Message {
            id: self.id,
            to: self.to,
            channel: self.channel,
            template: self.template,
            body: self.body,
            locale: self.locale,
            content_sid: self.content_sid,
            sensitive: self.sensitive,
            segments: self.segments,
            priority: self.priority,
            status: MessageStatus::Queued,
            api_key: self.api_key,
            idempotency_key: self.idempotency_key,
            idempotency_fingerprint: self.idempotency_fingerprint,
            verification_id: self.verification_id,
            send_before: self.send_before,
            provider: None,
            provider_sid: None,
            error_code: None,
            error_message: None,
            price: None,
            attempt_count: 0,
            next_attempt_at: self.created_at,
            request_id: self.request_id,
            traceparent: self.traceparent,
            created_at: self.created_at,
            updated_at: self.created_at,
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub to: PhoneNumber,
    pub channel: Channel,
    pub template: Option<String>,
    /// Emptied once a sensitive message leaves the queue for good (sent, failed, expired): the
    /// code must not outlive its use in the database.
    pub body: String,
    /// See [`NewMessage::locale`].
    pub locale: Option<String>,
    /// See [`NewMessage::content_sid`].
    pub content_sid: Option<String>,
    /// The body holds a secret: the message comes from a sensitive template, or carries a
    /// verification's code. Such a body is never logged.
    pub sensitive: bool,
    pub segments: u32,
    pub priority: Priority,
    pub status: MessageStatus,
    pub api_key: String,
    pub idempotency_key: Option<String>,
    /// See [`NewMessage::idempotency_fingerprint`]; `None` for a message stored before
    /// fingerprints were kept.
    pub idempotency_fingerprint: Option<String>,
    pub verification_id: Option<VerificationId>,
    pub send_before: Option<DateTime<Utc>>,
    /// The provider that accepted the message (`twilio`, `vonage`), once one has.
    pub provider: Option<String>,
    pub provider_sid: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// What the provider charged, once it says (on acceptance or in a later status report).
    pub price: Option<Price>,
    pub attempt_count: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub request_id: Option<String>,
    /// See [`NewMessage::traceparent`].
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Debug leaves out the body, which may hold a one-time code.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .field("sensitive", &self.sensitive)
            .field("status", &self.status)
            .field("attempt_count", &self.attempt_count)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// Whether the body holds a secret. A verification's code message stored before the
    /// `sensitive` flag existed has it unset, but is one.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive || self.verification_id.is_some()
    }

    /// Whether the message may no longer be sent because its content has expired.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.send_before.is_some_and(|deadline| now >= deadline)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Sent,
    /// Failed in a way a later try may fix (network, 5xx, throttling).
    RetryableError,
    /// Failed in a way no retry can fix (invalid number, opted out, bad credentials).
    PermanentError,
    /// No answer after the request was written (a timeout, a reset connection): the provider
    /// may have accepted the message. Retried, after asking the provider where it can tell.
    Ambiguous,
    /// The worker sending it died (or hung) before recording an outcome: its lease ran out and
    /// the next claim recorded this in its place. The provider may have accepted the message.
    Lost,
    /// Not sent again: the provider's list showed it had accepted an earlier, unanswered
    /// attempt, and the message took that message's id.
    Adopted,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::RetryableError => "retryable_error",
            AttemptOutcome::PermanentError => "permanent_error",
            AttemptOutcome::Ambiguous => "ambiguous",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Adopted => "adopted",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = UnknownStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        [
            AttemptOutcome::Sent,
            AttemptOutcome::RetryableError,
            AttemptOutcome::PermanentError,
            AttemptOutcome::Ambiguous,
            AttemptOutcome::Lost,
            AttemptOutcome::Adopted,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == value)
        .ok_or_else(|| UnknownStatus(value.to_owned()))
    }
}

/// One call to the provider, whatever came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    /// The provider called (`twilio`, `vonage`); `None` for attempts recorded before providers
    /// were named.
    pub provider: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The W3C `traceparent` of the attempt's send span, which what came of the send (a status
    /// report, a client webhook) links to; `None` when traces are not exported.
    pub traceparent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;

    #[test]
    fn a_message_moves_forward_through_sending_to_a_carrier_status() {
        assert!(Queued.can_transition_to(Sending));
        assert!(Sending.can_transition_to(Sent));
        assert!(Sent.can_transition_to(Delivered));
        assert!(Sent.can_transition_to(Undelivered));
        assert!(Sent.can_transition_to(Failed));
    }

    #[test]
    fn a_retry_puts_a_sending_message_back_in_the_queue() {
        assert!(Sending.can_transition_to(Queued));
        assert!(!Sent.can_transition_to(Queued));
    }

    #[test]
    fn final_statuses_never_change() {
        for terminal in [Delivered, Undelivered, Failed, Expired] {
            assert!(terminal.is_terminal());
            for next in MessageStatus::ALL {
                assert!(!terminal.can_transition_to(next), "{terminal} -> {next}");
            }
        }
    }

    #[test]
    fn a_late_sent_after_delivered_is_not_a_transition() {
        assert!(!Delivered.can_transition_to(Sent));
        assert!(!Sent.can_transition_to(Sent));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse::<MessageStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{status}\"")
            );
        }
    }

    fn plain_message() -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            template: None,
            body: "Your order has shipped".into(),
            locale: None,
            content_sid: None,
            sensitive: false,
            segments: 1,
            priority: Priority::Normal,
            api_key: "shop".into(),
            idempotency_key: None,
            idempotency_fingerprint: None,
            verification_id: None,
            send_before: None,
            request_id: None,
            traceparent: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_message_debugged_never_shows_its_body() {
        let new = NewMessage {
            template: Some("password-reset".into()),
            body: "Your reset code is 771204".into(),
            sensitive: true,
            ..plain_message()
        };
        let queued = new.clone().into_queued();
        for debugged in [format!("{new:?}"), format!("{queued:?}")] {
            assert!(debugged.contains("password-reset"), "{debugged}");
            assert!(!debugged.contains("771204"), "{debugged}");
        }
    }

    #[test]
    fn a_message_is_sensitive_when_flagged_or_when_it_carries_a_code() {
        let plain = plain_message();
        assert!(!plain.clone().into_queued().is_sensitive());
        let flagged = NewMessage {
            sensitive: true,
            ..plain.clone()
        };
        assert!(flagged.into_queued().is_sensitive());
        let code_stored_before_the_flag = NewMessage {
            verification_id: Some(VerificationId::generate()),
            ..plain
        };
        assert!(code_stored_before_the_flag.into_queued().is_sensitive());
    }

    #[test]
    fn attempt_outcomes_round_trip_through_their_lower_case_names() {
        for (outcome, name) in [
            (AttemptOutcome::Ambiguous, "ambiguous"),
            (AttemptOutcome::Lost, "lost"),
            (AttemptOutcome::Adopted, "adopted"),
        ] {
            assert_eq!(outcome.as_str(), name);
            assert_eq!(name.parse::<AttemptOutcome>(), Ok(outcome));
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn verification_codes_outrank_other_messages() {
        assert!(Priority::Verification.rank() > Priority::Normal.rank());
        assert_eq!(Priority::from_rank(10), Priority::Verification);
        assert_eq!(Priority::from_rank(0), Priority::Normal);
    }
}
