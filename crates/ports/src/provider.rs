//! The provider ports: sending a message, asking what became of it, and finding what a
//! provider accepted, with the failure kinds the dispatcher decides on.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Channel, DeliveryEvent, MessageId, PhoneNumber, Price};

/// One message on its way to a provider.
#[derive(Clone, PartialEq)]
pub struct OutboundMessage {
    pub message_id: MessageId,
    pub to: PhoneNumber,
    pub channel: Channel,
    /// The text; for a message with a `content_sid`, the template's variables as JSON.
    pub body: String,
    /// The language of the text (`fr`, `pt-BR`), when one was chosen: a call speaks it so.
    pub locale: Option<String>,
    /// The provider's approved template that carries the message instead of a free text
    /// (Twilio's Content SID, `HX...`), filled in with the variables in `body`.
    pub content_sid: Option<String>,
    /// How long the provider may keep trying before the content is useless (a one-time code's
    /// remaining lifetime). `None`: no limit.
    pub validity: Option<Duration>,
    /// The body holds a secret (a one-time code) and must never be logged.
    pub sensitive: bool,
}

impl std::fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("message_id", &self.message_id)
            .field("to", &self.to)
            .field("channel", &self.channel)
            .field("locale", &self.locale)
            .field("content_sid", &self.content_sid)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// What the provider says when it has accepted a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReceipt {
    /// Which provider accepted the message ([`SmsProvider::name`]): with failover, not always
    /// the first one configured.
    pub provider: &'static str,
    /// The provider's id for the message (Twilio's `SM...` SID); for a message the provider
    /// split into parts with an id each (Vonage), the parts' ids in order, comma-separated.
    pub provider_sid: String,
    pub segments: Option<u32>,
    /// What the message cost: an amount spent, positive whatever the provider's sign.
    pub price: Option<Price>,
}

/// What a failure says about the next attempt, and about whom.
///
/// `Retryable` and `Account` are provider-wide: they count against the provider's circuit, and
/// another provider may well succeed. `Permanent` is about this message or its recipient and is
/// final whichever provider is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// A later attempt may succeed: network trouble, timeouts, 5xx, throttling.
    Retryable,
    /// Retryable, but the request was written and no answer came (a timeout, a connection
    /// reset): the provider may have accepted the message, and a retry may send it twice. A
    /// failure that surely never reached the provider (it could not connect) is `Retryable`.
    Ambiguous,
    /// The provider refuses our account: bad credentials, suspended or unfunded account, a
    /// sender it does not allow. No attempt through it succeeds until an operator acts; another
    /// provider may.
    Account,
    /// No attempt will succeed, through any provider: invalid or unreachable number, opted out,
    /// content refused.
    Permanent,
}

/// A failed send, classified by the adapter so that the dispatcher can decide without knowing
/// the provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// Which provider failed ([`SmsProvider::name`]).
    pub provider: &'static str,
    pub kind: ProviderErrorKind,
    pub http_status: Option<u16>,
    /// The provider's own error code (Twilio: `21211`).
    pub code: Option<String>,
    pub message: String,
    pub more_info: Option<String>,
    /// How long the provider asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// The parts of a long message that went out before the provider refused the rest (their
    /// ids and price). Such a failure is final, whatever its `kind`: no provider can send only
    /// the missing parts, and sending the whole again repeats the parts already delivered.
    pub partly_sent: Option<Box<ProviderReceipt>>,
}

impl ProviderError {
    /// Whether a later attempt may succeed; never once parts of the message went out.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::Retryable | ProviderErrorKind::Ambiguous
        ) && self.partly_sent.is_none()
    }

    /// Whether the provider may have accepted the message all the same.
    pub fn is_ambiguous(&self) -> bool {
        self.kind == ProviderErrorKind::Ambiguous
    }

    /// Whether the failure is the provider's rather than the message's: it counts against the
    /// provider's circuit, and another provider may succeed.
    pub fn is_provider_wide(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::Retryable
                | ProviderErrorKind::Ambiguous
                | ProviderErrorKind::Account
        )
    }
}

/// Sends one SMS or WhatsApp message, or places a call that speaks a code. The seed's
/// `sendSms(to, message)`.
///
/// # Errors
/// A [`ProviderError`] whose `kind` says whether retrying can help. Implementations never retry
/// by themselves: the dispatcher owns the retry policy.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SmsProvider: Send + Sync {
    /// A short name for logs, metrics and attempt records (`twilio`, `console`).
    fn name(&self) -> &'static str;

    /// Whether the provider can send on `channel` as configured, so that a call is never sent
    /// as a text by a provider that cannot place one. The default is what every provider did
    /// before calls existed: text channels.
    fn can_send(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Whatsapp)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError>;

    /// Whether the provider would accept sends now, for the service's readiness check (Twilio:
    /// the credentials are accepted). Called at most once per cache interval, never per send.
    /// The default has nothing to check.
    async fn check_ready(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// Asks a provider what became of a message it accepted, for the messages whose status
/// callback never came.
///
/// # Errors
/// A [`ProviderError`] when the provider cannot be asked or does not know the message; the
/// caller asks again later.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait StatusLookup: Send + Sync {
    /// The provider whose messages this looks up, as its [`SmsProvider::name`].
    fn provider(&self) -> &'static str;

    /// The message's status at the provider now, as a delivery event received at `now`.
    async fn lookup(
        &self,
        provider_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<DeliveryEvent, ProviderError>;
}

/// Finds a message a provider accepted although the attempt that sent it got no answer, so that
/// the dispatcher can adopt it instead of sending the message twice.
///
/// # Errors
/// A [`ProviderError`] when the provider cannot be asked; the caller sends as it would have.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SentMessageSearch: Send + Sync {
    /// The provider whose messages this searches, as its [`SmsProvider::name`].
    fn provider(&self) -> &'static str;

    /// A message the provider holds from our sender to `message.to` with `message.body`,
    /// created between `created_after` and `created_before`, as the receipt its send would
    /// have had; `None` when it holds none.
    async fn find_sent(
        &self,
        message: &OutboundMessage,
        created_after: DateTime<Utc>,
        created_before: DateTime<Utc>,
    ) -> Result<Option<ProviderReceipt>, ProviderError>;
}
