//! Delivers the outbox's events to client services' webhook endpoints as the Standard Webhooks
//! specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`), so that
//! clients verify them with its libraries. Deliveries are claimed under a lease like messages
//! (a crashed instance's are taken over), retried on the configured schedule, and never sent
//! to an address the SSRF guard refuses: the name is resolved, checked, and the connection made
//! only to the checked addresses (a resolver of our own), so DNS cannot swap in a private
//! address between the check and the connection. Also notices expired verifications.
//!
//! The store wakes it after each change that may have recorded events (another instance's
//! through `QueueWakeups`), so an event leaves at once; its poll finds retries as they fall due
//! and is the safety net. It claims only as many deliveries as it has room to send, and claims
//! again as sends end, so that one slow endpoint holds up no other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use domain::webhook::{is_public_address, EventId, EventType};
use domain::{Attempt, Message, MessageId, Verification, VerificationId};
use hmac::{Hmac, Mac};
use ports::{
    ClaimedDelivery, Clock, DeliveryAnswer, DeliveryResult, LoggedDecision, MessageStore,
    StoreError, StoredEvent, VerificationStore, WebhookStore,
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::backoff::Backoff;
use crate::http::{event_data, EventObject};
use crate::observability::metrics::Metrics;
use crate::observability::traces;
use crate::usecases::events::{check_destination, resolve, UrlRefusal};
use crate::wiring::config::WebhookConfig;

/// A delivery waits at most this long for the endpoint's answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read (kept as the delivery's error for the operator).
const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// The most deliveries claimed at once.
const BATCH: u32 = 256;
/// Deliveries being sent at once by one instance: two batches, so that the next batch is
/// claimed while the last one's slowest sends still wait for their endpoints.
const IN_FLIGHT: u32 = 2 * BATCH;
/// The least time between two looks that found less than a batch, however often the store
/// wakes the deliverer: every status a message takes wakes it, whether an endpoint wants the
/// event or not.
const LOOK_GAP: Duration = Duration::from_millis(2);
/// How long a claimed delivery stays with this instance: the timeout and some.
const LEASE: Duration = Duration::from_secs(60);
/// How often expired verifications are looked for: an expiry is noticed well within a minute.
const EXPIRY_SWEEP: Duration = Duration::from_secs(15);
const EXPIRY_BATCH: u32 = 500;
/// An endpoint whose every delivery failed for this long is disabled.
pub const FAILING_LIMIT: TimeDelta = TimeDelta::days(5);

/// The three headers' values for a payload, as the specification defines them: the signature
/// is `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`, keyed by the base64-decoded
/// part of the secret after `whsec_`. `None` for a secret that is not one.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Resolves names for webhook connections, refusing every name with an address that is not
/// public (unless private ones are allowed).
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = resolve(name.as_str(), 0).await?;
            if !allow_private {
                if let Some(private) = addresses.iter().find(|a| !is_public_address(a.ip())) {
                    return Err(Box::new(UrlRefusal::NotPublic {
                        host: name.as_str().to_owned(),
                        address: private.ip(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Sends what the outbox holds, on every instance; the store's claims keep two instances
/// from sending one delivery at once.
#[derive(Clone)]
pub struct WebhookDeliverer {
    inner: Arc<Inner>,
    /// Notified when events may have been recorded: by the store, or for another instance.
    wake: Arc<Notify>,
}

struct Inner {
    webhooks: Arc<dyn WebhookStore>,
    messages: Arc<dyn MessageStore>,
    verifications: Arc<dyn VerificationStore>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
}

impl WebhookDeliverer {
    pub fn new(
        webhooks: Arc<dyn WebhookStore>,
        messages: Arc<dyn MessageStore>,
        verifications: Arc<dyn VerificationStore>,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private,
            }))
            .user_agent(concat!("sms-notify-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                webhooks,
                messages,
                verifications,
                clock,
                client,
                config,
                metrics,
            }),
            wake,
        })
    }

    /// What wakes it: notified for events another instance may have recorded.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Delivers until `shutdown` turns true; a delivery cut short is sent again once its lease
    /// lapses. After the store fails, the looks back off (see `backoff`).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = self.inner.config.poll_interval;
        let mut last_sweep: Option<Instant> = None;
        let mut backoff = Backoff::after(poll);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT as usize));
        let mut sends = JoinSet::new();
        while !*shutdown.borrow() {
            while sends.try_join_next().is_some() {}
            let mut swept = Ok(0);
            if last_sweep.is_none_or(|at| at.elapsed() >= EXPIRY_SWEEP) {
                swept = self.sweep_expiries().await;
                last_sweep = Some(Instant::now());
            }
            let looked_at = Instant::now();
            let looked = match swept {
                // While the database is down, one failed question per look is enough.
                Err(error @ StoreError::Unavailable(_)) => Err(error),
                Err(error) => {
                    tracing::error!(%error, "cannot look for expired verifications");
                    self.claim_and_send(&slots, &mut sends).await
                }
                Ok(_) => self.claim_and_send(&slots, &mut sends).await,
            };
            let (pause, wakeable) = match looked {
                Ok(Looked { claimed, room }) => {
                    let failures = backoff.succeeded();
                    if failures > 0 {
                        tracing::info!(failures, "the database answers again; delivering webhooks");
                    }
                    // A full claim: more may be due, as soon as there is room to send them.
                    if claimed >= room {
                        continue;
                    }
                    (poll, true)
                }
                Err(error) => {
                    let wait = backoff.failed();
                    tracing::error!(
                        %error,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "cannot claim webhook deliveries or notice expiries"
                    );
                    (wait, false)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified(), if wakeable => {
                    tokio::time::sleep(LOOK_GAP.saturating_sub(looked_at.elapsed())).await;
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Waits for room to send a batch, claims up to a batch of due deliveries and starts
    /// sending them; each gives its room back when it ends (the room of what was not claimed is
    /// given back at once).
    async fn claim_and_send(
        &self,
        slots: &Arc<Semaphore>,
        sends: &mut JoinSet<()>,
    ) -> Result<Looked, StoreError> {
        let room = BATCH as usize;
        let Ok(mut permits) = slots.clone().acquire_many_owned(BATCH).await else {
            // The semaphore is never closed.
            return Ok(Looked { claimed: 0, room });
        };
        let now = self.inner.clock.now();
        let claimed = self
            .inner
            .webhooks
            .claim_deliveries(now, BATCH, LEASE)
            .await?;
        let count = claimed.len();
        let rendered = self.inner.render_claimed(&claimed).await;
        for delivery in claimed {
            let Some(permit) = permits.split(1) else {
                break;
            };
            let data = rendered.get(&delivery.event.id).cloned();
            let inner = self.inner.clone();
            sends.spawn(async move {
                inner.deliver(delivery, data).await;
                drop(permit);
            });
        }
        Ok(Looked {
            claimed: count,
            room,
        })
    }

    /// Marks expired verifications `expired` (which records their events); how many.
    pub async fn notice_expiries(&self) -> u64 {
        self.sweep_expiries().await.unwrap_or_else(|error| {
            tracing::error!(%error, "cannot look for expired verifications");
            0
        })
    }

    async fn sweep_expiries(&self) -> Result<u64, StoreError> {
        let now = self.inner.clock.now();
        self.inner
            .webhooks
            .expire_verifications(now, EXPIRY_BATCH)
            .await
    }

    /// Claims one batch of due deliveries and sends them concurrently; how many were claimed.
    pub async fn deliver_once(&self) -> usize {
        self.deliver_batch().await.unwrap_or_else(|error| {
            tracing::error!(%error, "cannot claim webhook deliveries");
            0
        })
    }

    async fn deliver_batch(&self) -> Result<usize, StoreError> {
        let now = self.inner.clock.now();
        let claimed = self
            .inner
            .webhooks
            .claim_deliveries(now, BATCH, LEASE)
            .await?;
        let count = claimed.len();
        let rendered = self.inner.render_claimed(&claimed).await;
        let mut sends = JoinSet::new();
        for delivery in claimed {
            let data = rendered.get(&delivery.event.id).cloned();
            let inner = self.inner.clone();
            sends.spawn(async move { inner.deliver(delivery, data).await });
        }
        while sends.join_next().await.is_some() {}
        Ok(count)
    }
}

/// What one look claimed, and how many it could have.
struct Looked {
    claimed: usize,
    room: usize,
}

/// How one attempt went.
enum Attempted {
    Delivered { status: u16 },
    Gone,
    Failed { answer: DeliveryAnswer },
    Refused(UrlRefusal),
}

impl Inner {
    #[tracing::instrument(skip_all, fields(
        endpoint_id = %delivery.endpoint.id,
        event_id = %delivery.event.id,
        event = %delivery.event.kind,
        attempt = delivery.attempt,
    ))]
    async fn deliver(&self, delivery: ClaimedDelivery, rendered: Option<String>) {
        let event_name = delivery.event.kind.as_str();
        // A trace of its own, linked to the send the event tells of.
        if traces::exporting() && delivery.event.kind.is_about_a_message() {
            let id = domain::MessageId::from_uuid(delivery.event.object_id);
            if let Ok(Some(message)) = self.messages.get(id).await {
                traces::link_to_send(self.messages.as_ref(), &message).await;
            }
        }
        let body = match self.payload(&delivery.event, rendered).await {
            Ok(body) => body,
            Err(error) => {
                // Held until its lease lapses, then tried again.
                return tracing::error!(%error, "cannot render a webhook event");
            }
        };
        let started = Instant::now();
        let attempted = self.send(&delivery, &body).await;
        let seconds = started.elapsed().as_secs_f64();
        let now = self.clock.now();
        let endpoint = &delivery.endpoint;
        let (result, answer, outcome) = match attempted {
            Attempted::Delivered { status } => {
                // Only an endpoint noted failing when claimed has a failing time to clear; a
                // failure since then is cleared by the next success.
                if endpoint.failing_since.is_some() {
                    let _ = self
                        .webhooks
                        .endpoint_answered(endpoint.id, true, now)
                        .await;
                }
                let answer = DeliveryAnswer {
                    http_status: Some(status),
                    error: None,
                };
                (DeliveryResult::Delivered, answer, "delivered")
            }
            Attempted::Gone => {
                if let Ok(true) = self
                    .webhooks
                    .disable_endpoint(endpoint.id, "gone", now)
                    .await
                {
                    tracing::warn!("webhook endpoint answered 410 Gone: disabled");
                    self.metrics.webhook_endpoint_disabled("gone");
                }
                let answer = DeliveryAnswer {
                    http_status: Some(410),
                    error: Some("410 Gone: the endpoint was disabled".into()),
                };
                (DeliveryResult::Failed, answer, "failed")
            }
            Attempted::Failed { answer } => {
                self.failed(&delivery, now).await;
                self.retry_or_fail(&delivery, answer, now)
            }
            Attempted::Refused(refusal) => {
                tracing::warn!(%refusal, "webhook endpoint refused by the SSRF guard");
                self.failed(&delivery, now).await;
                let answer = DeliveryAnswer {
                    http_status: None,
                    error: Some(refusal.to_string()),
                };
                let (result, answer, _) = self.retry_or_fail(&delivery, answer, now);
                (result, answer, "refused")
            }
        };
        self.metrics.webhook_delivery(
            outcome,
            event_name,
            Some(seconds).filter(|_| outcome != "refused"),
        );
        match self
            .webhooks
            .finish_delivery(delivery.claim, delivery.id, result, answer, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("a webhook delivery's lease lapsed before it finished"),
            Err(error) => tracing::error!(%error, "cannot record a webhook delivery"),
        }
    }

    fn retry_or_fail(
        &self,
        delivery: &ClaimedDelivery,
        answer: DeliveryAnswer,
        now: DateTime<Utc>,
    ) -> (DeliveryResult, DeliveryAnswer, &'static str) {
        match self.config.retry_schedule.wait_after(delivery.attempt) {
            Some(wait) => {
                let at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                (DeliveryResult::Retry { at }, answer, "retried")
            }
            None => {
                tracing::warn!(
                    error = answer.error.as_deref(),
                    "webhook delivery failed for good"
                );
                (DeliveryResult::Failed, answer, "failed")
            }
        }
    }

    /// Notes the failure on the endpoint, and disables one failing for [`FAILING_LIMIT`].
    async fn failed(&self, delivery: &ClaimedDelivery, now: DateTime<Utc>) {
        let endpoint = &delivery.endpoint;
        let since = match self
            .webhooks
            .endpoint_answered(endpoint.id, false, now)
            .await
        {
            Ok(since) => since,
            Err(error) => return tracing::error!(%error, "cannot record a webhook failure"),
        };
        if since.is_some_and(|since| now - since >= FAILING_LIMIT) {
            if let Ok(true) = self
                .webhooks
                .disable_endpoint(endpoint.id, "failing", now)
                .await
            {
                tracing::warn!(
                    url = %endpoint.url,
                    "webhook endpoint disabled: every delivery to it failed for 5 days"
                );
                self.metrics.webhook_endpoint_disabled("failing");
            }
        }
    }

    async fn send(&self, delivery: &ClaimedDelivery, body: &str) -> Attempted {
        let endpoint = &delivery.endpoint;
        let url = match url::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(error) => return Attempted::Refused(UrlRefusal::Invalid(error.to_string())),
        };
        // Checked again: the name may resolve elsewhere than at registration. The resolver
        // checks once more the addresses it connects to.
        if let Err(refusal) = check_destination(&url, self.config.allow_private).await {
            return Attempted::Refused(refusal);
        }
        let now = self.clock.now();
        let id = delivery.event.id.to_string();
        let timestamp = now.timestamp();
        let mut signatures: Vec<String> = Vec::new();
        let previous = endpoint.previous_secret.as_deref().filter(|_| {
            endpoint
                .previous_secret_until
                .is_some_and(|until| until > now)
        });
        for secret in std::iter::once(endpoint.secret.as_str()).chain(previous) {
            signatures.extend(signature(secret, &id, timestamp, body));
        }
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(body.to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempted::Failed {
                    answer: DeliveryAnswer {
                        http_status: None,
                        error: Some(one_line_error(&error)),
                    },
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempted::Delivered {
                status: status.as_u16(),
            };
        }
        if status == reqwest::StatusCode::GONE {
            return Attempted::Gone;
        }
        let mut excerpt = Vec::new();
        while excerpt.len() < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(MAX_ANSWER_BYTES);
        let text = String::from_utf8_lossy(&excerpt);
        let text = text.trim();
        Attempted::Failed {
            answer: DeliveryAnswer {
                http_status: Some(status.as_u16()),
                error: Some(if text.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {text}")
                }),
            },
        }
    }

    /// The event's body: its envelope around its data, rendered once and kept, so that every
    /// delivery and replay of it carries the same data. `rendered` is its data rendered with
    /// its batch when none was kept before (`None`: rendered here, alone).
    async fn payload(
        &self,
        event: &StoredEvent,
        rendered: Option<String>,
    ) -> Result<String, StoreError> {
        if let Some(kept) = &event.data {
            return envelope(event, kept);
        }
        let rendered = match rendered {
            Some(rendered) => rendered,
            None => self.objects_of(&[event]).await?.data(event),
        };
        let kept = self.webhooks.keep_event_data(event.id, &rendered).await?;
        envelope(event, &kept)
    }

    /// The data of the claimed deliveries' events that have none kept, by event; none when
    /// their objects cannot be read (each delivery then tries alone).
    async fn render_claimed(&self, claimed: &[ClaimedDelivery]) -> HashMap<EventId, String> {
        let unrendered: Vec<&StoredEvent> = claimed
            .iter()
            .map(|delivery| &delivery.event)
            .filter(|event| event.data.is_none())
            .collect();
        if unrendered.is_empty() {
            return HashMap::new();
        }
        match self.objects_of(&unrendered).await {
            Ok(objects) => unrendered
                .into_iter()
                .map(|event| (event.id, objects.data(event)))
                .collect(),
            Err(error) => {
                tracing::error!(%error, "cannot read the objects of a batch of webhook events");
                HashMap::new()
            }
        }
    }

    /// The objects of `events`, in one question per kind (two for messages and their
    /// attempts) for them all, not one or two per event.
    async fn objects_of(&self, events: &[&StoredEvent]) -> Result<Objects, StoreError> {
        let mut message_ids = Vec::new();
        let mut verification_ids = Vec::new();
        let mut decision_ids = Vec::new();
        for event in events {
            match ObjectKind::of(event.kind) {
                ObjectKind::Message => message_ids.push(MessageId::from_uuid(event.object_id)),
                ObjectKind::Decision => decision_ids.push(event.object_id),
                ObjectKind::Verification => {
                    verification_ids.push(VerificationId::from_uuid(event.object_id));
                }
            }
        }
        let mut objects = Objects::default();
        if !message_ids.is_empty() {
            for (message, attempts) in self.messages.get_with_attempts(&message_ids).await? {
                objects
                    .messages
                    .insert(message.id.as_uuid(), (message, attempts));
            }
        }
        if !verification_ids.is_empty() {
            for verification in self.verifications.get_many(&verification_ids).await? {
                objects
                    .verifications
                    .insert(verification.id.as_uuid(), verification);
            }
        }
        if !decision_ids.is_empty() {
            for decision in self.webhooks.logged_decisions(&decision_ids).await? {
                objects.decisions.insert(decision.id, decision);
            }
        }
        Ok(objects)
    }
}

/// The objects of a batch's events, by id, read once for them all.
#[derive(Default)]
struct Objects {
    messages: HashMap<Uuid, (Message, Vec<Attempt>)>,
    verifications: HashMap<Uuid, Verification>,
    decisions: HashMap<Uuid, LoggedDecision>,
}

impl Objects {
    /// `event`'s data, from its object as read (`Gone` when it no longer exists). An object
    /// may be the object of several events of a batch (a message sent, then delivered): each
    /// renders from its own copy.
    fn data(&self, event: &StoredEvent) -> String {
        let id = event.object_id;
        let object = match ObjectKind::of(event.kind) {
            ObjectKind::Message => self.messages.get(&id).map(|(message, attempts)| {
                EventObject::Message(Box::new(message.clone()), attempts.clone())
            }),
            ObjectKind::Verification => self
                .verifications
                .get(&id)
                .cloned()
                .map(EventObject::Verification),
            ObjectKind::Decision => self.decisions.get(&id).cloned().map(EventObject::Decision),
        };
        event_data(event, object.unwrap_or(EventObject::Gone)).to_string()
    }
}

/// What an event's data is rendered from, by the event's type.
enum ObjectKind {
    Message,
    Verification,
    Decision,
}

impl ObjectKind {
    fn of(kind: EventType) -> Self {
        if kind.is_about_a_message() {
            Self::Message
        } else if kind == EventType::VerificationBlocked {
            Self::Decision
        } else {
            Self::Verification
        }
    }
}

/// The fields of an event's body, in the order a receiver has always had them in (a
/// `serde_json` map's, sorted by name). `data` is spliced in as kept, never parsed into a
/// value and written again.
#[derive(Serialize)]
struct Envelope<'a> {
    created_at: DateTime<Utc>,
    data: &'a RawValue,
    id: EventId,
    sequence: u64,
    #[serde(rename = "type")]
    kind: EventType,
}

/// The body of `event` around its kept `data`; kept data that is not JSON is corrupt.
fn envelope(event: &StoredEvent, data: &str) -> Result<String, StoreError> {
    let corrupt =
        |error: serde_json::Error| StoreError::Corrupt(format!("webhook_events.data: {error}"));
    let data: &RawValue = serde_json::from_str(data).map_err(corrupt)?;
    serde_json::to_string(&Envelope {
        created_at: event.created_at,
        data,
        id: event.id,
        sequence: event.sequence,
        kind: event.kind,
    })
    .map_err(corrupt)
}

/// A reqwest error and its causes on one line, for the delivery's record.
fn one_line_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::wiring::server::one_line(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_specifications_example() {
        // The example of the Standard Webhooks specification's reference implementations.
        let signature = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            signature.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn the_body_carries_the_kept_data_as_a_parsed_and_written_again_envelope_did() {
        let event = StoredEvent {
            id: EventId::generate(),
            kind: EventType::MessageDelivered,
            object_id: Uuid::new_v4(),
            api_key: "shop".into(),
            sequence: 2,
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            status: Some("delivered".into()),
            error_code: None,
            error_message: None,
            price: None,
            detail: None,
            data: None,
        };
        let data = serde_json::json!({
            "id": event.object_id,
            "status": "delivered",
            "to": "+3361***5678",
            "body_note": "é \"quoted\" \u{1F600}",
            "price": {"amount": "0.0075", "currency": "EUR"},
            "segments": 2,
            "ratio": 0.1,
            "attempts": [{"number": 1, "error_code": null}],
        })
        .to_string();

        let body = envelope(&event, &data).unwrap();

        // As the deliverer rendered it before it spliced the data in.
        let parsed: serde_json::Value = serde_json::from_str(&data).unwrap();
        let before = serde_json::json!({
            "id": event.id,
            "type": event.kind,
            "created_at": event.created_at,
            "sequence": event.sequence,
            "data": parsed,
        })
        .to_string();
        assert_eq!(body, before);
        assert!(body.starts_with(r#"{"created_at":"2025-11-24T"#), "{body}");
    }

    #[test]
    fn kept_data_that_is_not_json_is_corrupt() {
        let event = StoredEvent {
            id: EventId::generate(),
            kind: EventType::VerificationApproved,
            object_id: Uuid::new_v4(),
            api_key: "auth".into(),
            sequence: 1,
            created_at: Utc::now(),
            status: None,
            error_code: None,
            error_message: None,
            price: None,
            detail: None,
            data: None,
        };
        for data in ["", "{\"id\":", "{} trailing"] {
            assert!(
                matches!(envelope(&event, data), Err(StoreError::Corrupt(_))),
                "{data:?}"
            );
        }
    }
}
