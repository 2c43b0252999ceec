//! The store ports: the durable message queue and verifications, and the decisions (what a
//! finish writes) every store shares.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use domain::{
    Attempt, CodeHash, DeliveryEvent, Message, MessageId, MessageStatus, NewMessage, PhoneNumber,
    Price, Verification, VerificationId, VerificationStatus,
};

use crate::{ClaimBudget, Claimed, LoggedDecision};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed (its connection, the pool, the disk); the
    /// operation may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored row no longer reads back as a domain value (a bug or a manual edit).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database answered and refused this statement (a value it cannot hold, a broken
    /// constraint): the database is up, and the same statement would fail again.
    #[error("the database refused the statement: {0}")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The message as a store holds it right after its insert, without reading it back (which
/// would parse its number again): both stores keep times to the microsecond.
pub fn stored_queued(message: &NewMessage, verification_id: Option<VerificationId>) -> Message {
    NewMessage {
        verification_id,
        send_before: message.send_before.map(|at| at.trunc_subsecs(6)),
        created_at: message.created_at.trunc_subsecs(6),
        ..message.clone()
    }
    .into_queued()
}

/// The answer to an enqueue: the new message, or the one stored earlier under the same
/// idempotency key (which is never enqueued twice).
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    Created(Message),
    Existing(Message),
}

impl Enqueued {
    pub fn message(&self) -> &Message {
        match self {
            Enqueued::Created(message) | Enqueued::Existing(message) => message,
        }
    }

    pub fn into_message(self) -> Message {
        match self {
            Enqueued::Created(message) | Enqueued::Existing(message) => message,
        }
    }
}

/// Proof that a dispatcher holds a message's lease; finishing with a stale token (the lease ran
/// out and another worker claimed the message) changes nothing. Opaque: 128 unique bits
/// chosen by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub u128);

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedMessage {
    pub message: Message,
    pub claim: ClaimToken,
    /// When the provider may be called: the claim time, or later when a sender rate spaces
    /// the sends.
    pub send_at: DateTime<Utc>,
}

/// How an attempt ended, as the dispatcher decided from the provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchOutcome {
    Sent {
        /// The provider that accepted it.
        provider: String,
        provider_sid: String,
        segments: Option<u32>,
        price: Option<Price>,
    },
    Retry {
        at: DateTime<Utc>,
        error_code: Option<String>,
        error_message: String,
    },
    Failed {
        error_code: Option<String>,
        error_message: String,
    },
    /// Failed after some parts of a long message went out: the refusal, and what went out
    /// (the parts' ids and price) recorded on the message.
    PartlySent {
        provider: String,
        provider_sid: String,
        price: Option<Price>,
        error_code: Option<String>,
        error_message: String,
    },
    /// A one-time code whose verification ended before it could be sent.
    Expired,
}

impl DispatchOutcome {
    pub fn status(&self) -> MessageStatus {
        match self {
            DispatchOutcome::Sent { .. } => MessageStatus::Sent,
            DispatchOutcome::Retry { .. } => MessageStatus::Queued,
            DispatchOutcome::Failed { .. } | DispatchOutcome::PartlySent { .. } => {
                MessageStatus::Failed
            }
            DispatchOutcome::Expired => MessageStatus::Expired,
        }
    }
}

/// What [`MessageStore::record_delivery`] did with a delivery event.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryUpdate {
    /// The message moved to the event's status, and the event joined its history.
    Applied(Message),
    /// The message's status does not allow the move (a late or repeated report): nothing
    /// changed. Holds the message as it is.
    Ignored(Message),
    /// A report with this idempotency token was applied before: nothing changed. Holds the
    /// message as it is.
    Duplicate(Message),
    /// No message has this provider SID.
    UnknownMessage,
}

/// What finishing with a [`DispatchOutcome`] writes on the message, for every store to put in
/// its own SQL; `None` keeps the stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeColumns {
    pub provider: Option<String>,
    pub provider_sid: Option<String>,
    pub segments: Option<u32>,
    pub price: Option<Price>,
    /// Whether the error columns are replaced (by `None` for a success).
    pub replace_error: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl DispatchOutcome {
    pub fn into_columns(self) -> OutcomeColumns {
        let unchanged = OutcomeColumns {
            provider: None,
            provider_sid: None,
            segments: None,
            price: None,
            replace_error: false,
            error_code: None,
            error_message: None,
            next_attempt_at: None,
        };
        match self {
            DispatchOutcome::Sent {
                provider,
                provider_sid,
                segments,
                price,
            } => OutcomeColumns {
                provider: Some(provider),
                provider_sid: Some(provider_sid),
                segments,
                price,
                replace_error: true,
                ..unchanged
            },
            DispatchOutcome::Retry {
                at,
                error_code,
                error_message,
            } => OutcomeColumns {
                replace_error: true,
                error_code,
                error_message: Some(error_message),
                next_attempt_at: Some(at),
                ..unchanged
            },
            DispatchOutcome::Failed {
                error_code,
                error_message,
            } => OutcomeColumns {
                replace_error: true,
                error_code,
                error_message: Some(error_message),
                ..unchanged
            },
            DispatchOutcome::PartlySent {
                provider,
                provider_sid,
                price,
                error_code,
                error_message,
            } => OutcomeColumns {
                provider: Some(provider),
                provider_sid: Some(provider_sid),
                price,
                replace_error: true,
                error_code,
                error_message: Some(error_message),
                ..unchanged
            },
            DispatchOutcome::Expired => unchanged,
        }
    }
}

/// What [`MessageStore::finish`] writes, worked out once for every store: the outcome's
/// columns, and whether a sensitive message's body is emptied.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub claim: ClaimToken,
    pub id: MessageId,
    pub status: MessageStatus,
    pub columns: OutcomeColumns,
    /// Empty the body if the message is sensitive ([`Message::is_sensitive`]): it can no
    /// longer be sent.
    pub forget_body: bool,
    pub attempt: Option<Attempt>,
    pub now: DateTime<Utc>,
}

impl Finish {
    /// [`Finish::new`], with a warning instead of the error: `None` when a claimed message
    /// cannot take the outcome's status, which a store answers by recording nothing.
    pub fn of_claim(
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        Self::new(claim, id, attempt, outcome, now)
            .inspect_err(|next| tracing::warn!("a claimed message cannot move to {next}"))
            .ok()
    }

    /// The outcome's status as the error when a claimed message, which is `sending`, cannot
    /// take it.
    pub fn new(
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<Self, MessageStatus> {
        let status = outcome.status();
        if !MessageStatus::Sending.can_transition_to(status) {
            return Err(status);
        }
        Ok(Self {
            claim,
            id,
            status,
            columns: outcome.into_columns(),
            // A secret is needed only while the message can still be sent.
            forget_body: !status.can_transition_to(MessageStatus::Sending),
            attempt,
            now,
        })
    }
}

/// The durable queue of messages.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails; callers treat it as temporary.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a `queued` message, durably, before the caller answers its client. A message
    /// with the idempotency key of an earlier one from the same API key is not stored: the
    /// earlier one is returned.
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError>;

    async fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// The message `api_key` stored under `idempotency_key`, if any: a repeat of a request
    /// that a budget would now refuse is answered with what the first one stored.
    async fn by_idempotency_key(
        &self,
        api_key: &str,
        idempotency_key: &str,
    ) -> Result<Option<Message>, StoreError>;

    /// The attempts made for a message, oldest first.
    async fn attempts(&self, id: MessageId) -> Result<Vec<Attempt>, StoreError>;

    /// Those of `ids` that exist (in no order), each with its attempts oldest first: a batch's
    /// objects read in a fixed number of questions, not two per message.
    async fn get_with_attempts(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<(Message, Vec<Attempt>)>, StoreError>;

    /// Claims up to `limit` messages due at `now`: `queued` ones whose next attempt is due, and
    /// `sending` ones whose lease has run out (their worker died). Highest priority first, then
    /// oldest; of more lapsed leases than the limit takes, those that ran out first. Each claimed message is `sending`, leased until `now + lease`, and its attempt
    /// count already includes the attempt about to be made, so that a crash loop still uses up
    /// attempts. No two concurrent callers get the same message. A lapsed lease's attempt is
    /// recorded as [`domain::AttemptOutcome::Lost`] (from its claim to its lease's end).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let budget = ClaimBudget {
            limit,
            lease,
            max_in_flight: None,
            reserve: 0,
            settling: Vec::new(),
            sender_rate: None,
            max_attempts: None,
        };
        Ok(self.claim_within(now, &budget).await?.messages)
    }

    /// Claims as [`MessageStore::claim_due`] does, within caps shared by every caller of the
    /// store: no more messages `sending` under a live lease than `budget.max_in_flight`, and send
    /// times through the sender spaced by its rate and booked at most
    /// [`crate::SEND_HORIZON`] ahead. Checking the caps and claiming are one atomic step. A
    /// lapsed lease whose message has had `budget.max_attempts` attempts is not claimed: its
    /// lost attempt is recorded and the message `failed` with the error "the worker sending
    /// it was lost N times" (N: its lost attempts).
    async fn claim_within(
        &self,
        now: DateTime<Utc>,
        budget: &ClaimBudget,
    ) -> Result<Claimed, StoreError>;

    /// Gives a claimed message back to the queue unsent (shutdown): `queued`, due at `now`,
    /// lease cleared, the claimed attempt not counted. Returns `false`, changing nothing, when
    /// the claim is no longer held.
    async fn release(
        &self,
        claim: ClaimToken,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records how a claimed message's attempt ended and moves the message to the outcome's
    /// status, releasing the claim. `attempt` is `None` when no provider call was made
    /// (expired before sending). A sensitive message ([`Message::is_sensitive`]) that leaves
    /// the queue for good (sent, failed, expired) loses its body. Returns `false`, changing
    /// nothing, when the claim is no longer held.
    async fn finish(
        &self,
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// When the earliest message becomes claimable (a `queued` one's next attempt, or a
    /// `sending` one's lease running out), so that an idle dispatcher can sleep until then
    /// instead of polling.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Applies a delivery event to the message the provider knows as `provider_sid`, atomically
    /// and only as [`MessageStatus::can_transition_to`] allows, so that a late or replayed report
    /// changes nothing. An applied event is stored in the message's history; its error code and
    /// message replace the message's, and its price, when it has one, becomes the message's.
    /// An `idempotency_token` (the provider's id for the report) already stored with an
    /// applied event makes the report a [`DeliveryUpdate::Duplicate`].
    async fn record_delivery(
        &self,
        provider_sid: &str,
        event: DeliveryEvent,
        idempotency_token: Option<String>,
    ) -> Result<DeliveryUpdate, StoreError>;

    /// Claims up to `limit` messages still `sent` through `provider`, sent (last changed)
    /// between `sent_after` and `sent_before`, for a status lookup: the oldest first, skipping
    /// those another caller holds. Each claimed message is held until `hold_until`, so that no
    /// caller looks it up again before then; a lookup that changes nothing thus waits its turn.
    async fn claim_unconfirmed(
        &self,
        provider: &str,
        sent_after: DateTime<Utc>,
        sent_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError>;

    /// The delivery events applied to a message, oldest first.
    async fn delivery_events(&self, id: MessageId) -> Result<Vec<DeliveryEvent>, StoreError>;
}

/// The position of the last verification of a page: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationCursor {
    pub created_at: DateTime<Utc>,
    pub id: VerificationId,
}

/// Verifications, newest first, narrowed by the optional filters, as
/// [`crate::MessageFilter`] narrows messages.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationFilter {
    /// One API key's verifications; every key's with `None`.
    pub api_key: Option<String>,
    /// The status as of `now` ([`Verification::status_at`]): a pending verification past its
    /// expiry is `expired`.
    pub status: Option<VerificationStatus>,
    pub to: Option<PhoneNumber>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    pub before: Option<VerificationCursor>,
    pub limit: u32,
    pub now: DateTime<Utc>,
}

/// Verifications and the hashes of their codes.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// Stores a new verification, the hash of its first code and the message that carries the
    /// code, in one transaction: there is never a verification whose code was not queued. The
    /// fraud guard's `finding` that let the code go, if any, joins the decision log in the
    /// same transaction: a verification's finding costs no write of its own.
    async fn create(
        &self,
        verification: &Verification,
        code: CodeHash,
        message: NewMessage,
        finding: Option<LoggedDecision>,
    ) -> Result<Message, StoreError>;

    async fn get(&self, id: VerificationId) -> Result<Option<Verification>, StoreError>;

    /// Those of `ids` that exist, in no order, in one question.
    async fn get_many(&self, ids: &[VerificationId]) -> Result<Vec<Verification>, StoreError>;

    /// Up to `filter.limit` of an API key's verifications, newest first (then by id, highest
    /// first), after `filter.before`.
    async fn list(&self, filter: &VerificationFilter) -> Result<Vec<Verification>, StoreError>;

    /// The pending, unexpired verification for this number started by this API key, if any.
    async fn find_pending(
        &self,
        to: &PhoneNumber,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Verification>, StoreError>;

    /// Adds another code to a pending verification and queues its message, in one transaction,
    /// if the verification is still pending at `now`, has sends left and was last sent no later
    /// than `last_sent_before`. Earlier codes stay valid. `None`: refused, nothing stored. The
    /// guard's `finding` that let the code go, if any, joins the decision log in the same
    /// transaction (not when refused).
    async fn add_code(
        &self,
        id: VerificationId,
        code: CodeHash,
        message: NewMessage,
        now: DateTime<Utc>,
        last_sent_before: DateTime<Utc>,
        finding: Option<LoggedDecision>,
    ) -> Result<Option<(Verification, Message)>, StoreError>;

    /// Counts one check, atomically, if the verification is `api_key`'s, pending at `now` and
    /// has attempts left; returns it as counted, with the hashes of all its codes. `None`: the
    /// check was not counted (another client's, no longer pending, expired, or out of
    /// attempts) and must not approve.
    async fn count_check(
        &self,
        id: VerificationId,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Verification, Vec<CodeHash>)>, StoreError>;

    /// Moves a verification to `status` if `VerificationStatus::can_transition_to` allows it
    /// (from pending, or from max_attempts_reached to approved). Returns `false` when it does
    /// not, so that of two concurrent approvals exactly one wins. In the same transaction its code
    /// messages still queued become `expired` (bodies emptied), and one being sent gets a
    /// `send_before` of `now`, so that a retry of it expires instead of sending: a code that can
    /// no longer approve anything is never delivered.
    async fn conclude(
        &self,
        id: VerificationId,
        status: VerificationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
