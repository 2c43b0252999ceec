//! Client webhooks' store: the endpoints clients register, the outbox of events (written by
//! the store in the transaction of the change each reports), and the durable queue of their
//! deliveries, claimed under a lease as messages are.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::webhook::{EndpointId, EventId, EventType};
use domain::Price;
use uuid::Uuid;

use crate::{ClaimToken, LoggedDecision, StoreError};

/// A delivery whose last attempt failed: what an operator reads of a failing endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingDelivery {
    pub id: i64,
    pub event: EventId,
    pub kind: EventType,
    /// The message or verification the event is about.
    pub object_id: Uuid,
    pub attempts: u32,
    /// The endpoint's answer to the last attempt; `None` when it gave none (refused, timed out).
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    /// When it is tried again; `None` once given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A client's webhook endpoint, with its signing secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: EndpointId,
    /// The API key's name that registered it: the events of that key's objects go to it.
    pub api_key: String,
    pub url: String,
    pub description: Option<String>,
    /// The event types it receives, sorted, each once.
    pub events: Vec<EventType>,
    /// `whsec_` and the base64 of the key.
    pub secret: String,
    /// The secret before the last rotation, still signing beside `secret` until
    /// `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub enabled: bool,
    /// Why it was disabled, when the service disabled it (`gone`, `failing`).
    pub disabled_reason: Option<String>,
    /// Since when every delivery to it has failed; `None` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    pub fn receives(&self, kind: EventType) -> bool {
        self.events.contains(&kind)
    }
}

/// An event of the outbox. Events are written by the store itself, in the transaction of the
/// change they report, and only for API keys with an endpoint that receives their type.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: EventId,
    pub kind: EventType,
    /// The message's or verification's id (the fraud guard's decision's for
    /// [`EventType::VerificationBlocked`]).
    pub object_id: Uuid,
    pub api_key: String,
    /// 1 for the object's first event, then one more for each.
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    /// What the object's changing fields were at the event, where they may change later.
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub price: Option<Price>,
    /// Fields of its own that an event type carries (JSON), such as a fallback's channels.
    pub detail: Option<String>,
    /// The event's `data` (JSON), kept once first rendered so that every delivery and replay
    /// of the event sends the same bytes.
    pub data: Option<String>,
}

/// An event that application code records, rather than the store beside a change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventType,
    pub object_id: Uuid,
    pub api_key: String,
    pub at: DateTime<Utc>,
    pub status: Option<String>,
    pub detail: Option<String>,
}

/// A delivery of an event to an endpoint, claimed under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub claim: ClaimToken,
    /// This attempt's number, 1 for the first.
    pub attempt: u32,
    pub event: StoredEvent,
    pub endpoint: WebhookEndpoint,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    /// A 2xx.
    Delivered,
    /// Failed; tried again at `at`.
    Retry { at: DateTime<Utc> },
    /// Failed, and no attempt is left (or the endpoint is gone).
    Failed,
}

/// The attempt's details kept on the delivery, for the operator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryAnswer {
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// Client webhooks' endpoints, outbox and deliveries.
///
/// Each store writes an event and its deliveries (one per enabled endpoint of the object's API
/// key receiving the type) in the transaction of the change it reports: a verification
/// concluded (approved, canceled, max attempts reached, or expired by
/// [`WebhookStore::expire_verifications`]), a message sent, delivered, undelivered or failed,
/// a code refused by the fraud guard (its decision logged with the action `block`).
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails; [`StoreError::Corrupt`] when a stored
/// row does not read back.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;

    async fn endpoint(&self, id: EndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;

    /// The endpoints of `api_key`, or every endpoint when `None`, oldest first.
    async fn endpoints(&self, api_key: Option<String>) -> Result<Vec<WebhookEndpoint>, StoreError>;

    /// Replaces what a client or a rotation changes (url, description, events, secrets,
    /// enabled and its reason, failing since, updated at). `false` when it no longer exists.
    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<bool, StoreError>;

    /// Deletes an endpoint and its deliveries. `false` when it did not exist.
    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError>;

    /// Claims up to `limit` deliveries due at `now` to enabled endpoints (pending ones whose
    /// next attempt is due, and those whose lease ran out), oldest first, each leased until
    /// `now + lease` with its attempt counted. No two callers get the same delivery.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Keeps `data` as the event's rendered data unless one was kept first; answers the kept one.
    async fn keep_event_data(&self, id: EventId, data: &str) -> Result<String, StoreError>;

    /// Records how a claimed delivery's attempt ended, releasing the claim. `false`, changing
    /// nothing, when the claim is no longer held.
    async fn finish_delivery(
        &self,
        claim: ClaimToken,
        id: i64,
        result: DeliveryResult,
        answer: DeliveryAnswer,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Notes an answer from an endpoint: a success clears its failing time, a failure sets it
    /// unless set. Answers the failing time as it now is.
    async fn endpoint_answered(
        &self,
        id: EndpointId,
        succeeded: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Disables an endpoint, saying why. `false` when it was not enabled.
    async fn disable_endpoint(
        &self,
        id: EndpointId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Queues again, due at `now`, one delivery to this endpoint of each event of its API key
    /// created at or after `since` whose type it receives. Answers how many.
    async fn replay(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Records an event that no stored change carries (a channel fallback), with its
    /// deliveries, if an endpoint of its API key receives its type. `None` when none does.
    async fn record_event(&self, event: &NewEvent) -> Result<Option<EventId>, StoreError>;

    /// Marks up to `limit` pending verifications past their expiry at `now` as `expired`
    /// (which records their `verification.expired` events), for API keys with an endpoint
    /// receiving that type. Answers how many.
    async fn expire_verifications(&self, now: DateTime<Utc>, limit: u32)
        -> Result<u64, StoreError>;

    /// The fraud guard's logged decision, the object of a `verification.blocked` event.
    async fn logged_decision(&self, id: Uuid) -> Result<Option<LoggedDecision>, StoreError>;

    /// Those of the logged decisions `ids` that exist, in no order, in one question.
    async fn logged_decisions(&self, ids: &[Uuid]) -> Result<Vec<LoggedDecision>, StoreError>;

    /// The events of an object, oldest first.
    async fn events_of(&self, object_id: Uuid) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` of `endpoint`'s deliveries whose last attempt failed, newest first: those
    /// waiting for their next try and those given up. Never-tried and delivered ones are not.
    async fn failing_deliveries(
        &self,
        endpoint: EndpointId,
        limit: u32,
    ) -> Result<Vec<FailingDelivery>, StoreError>;
}
