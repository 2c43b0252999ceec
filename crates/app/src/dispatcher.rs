//! The dispatcher: claims due messages from the durable queue, sends them through the provider
//! within the concurrency cap, and records what happened. Several dispatchers (one per
//! instance) share one queue; the store's claim and lease rules keep them from sending a
//! message twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Attempt, AttemptOutcome, Message};
use ports::{
    ClaimedMessage, Clock, DispatchOutcome, MessageStore, OutboundMessage, ProviderError,
    SmsProvider,
};
use tokio::sync::{watch, Notify, Semaphore};
use tracing::Instrument;

use crate::config::DispatchConfig;

/// Most messages claimed in one query, so a large backlog is taken in bites.
const MAX_BATCH: usize = 100;
/// How long to wait after the store fails before trying again.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    store: Arc<dyn MessageStore>,
    provider: Arc<dyn SmsProvider>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
    wake: Arc<Notify>,
    in_flight: Arc<Semaphore>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn MessageStore>,
        provider: Arc<dyn SmsProvider>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            provider,
            clock,
            in_flight: Arc::new(Semaphore::new(config.concurrency)),
            config,
            wake,
        }
    }

    /// Runs until `shutdown` turns true, then stops claiming and waits for the sends in flight
    /// (their leases would hand them to another instance anyway if this one died first).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            provider = self.provider.name(),
            concurrency = self.config.concurrency,
            "dispatcher started"
        );
        while !*shutdown.borrow() {
            let claimed = self.claim_batch().await;
            let idle = match claimed {
                Ok(count) => count == 0,
                Err(error) => {
                    tracing::error!(%error, "cannot claim messages; retrying");
                    true
                }
            };
            if idle {
                let sleep = self.idle_sleep().await;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        // Every permit back means every send in flight has been recorded.
        let _all = self
            .in_flight
            .acquire_many(self.config.concurrency as u32)
            .await;
        tracing::info!("dispatcher stopped");
    }

    /// Claims as many due messages as there are free send slots (waiting for one slot if all
    /// are busy) and starts sending them. Returns how many were claimed.
    async fn claim_batch(&self) -> Result<usize, ports::StoreError> {
        let Ok(first) = self.in_flight.clone().acquire_owned().await else {
            return Ok(0);
        };
        let mut permits = vec![first];
        while permits.len() < MAX_BATCH {
            match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let claimed = self
            .store
            .claim_due(self.clock.now(), permits.len() as u32, self.config.lease)
            .await?;
        let count = claimed.len();
        for (claim, permit) in claimed.into_iter().zip(permits) {
            let worker = Worker {
                store: self.store.clone(),
                provider: self.provider.clone(),
                clock: self.clock.clone(),
                config: self.config,
            };
            let wake = self.wake.clone();
            let span = tracing::info_span!(
                "dispatch",
                message_id = %claim.message.id,
                to = %claim.message.to.masked(),
                attempt = claim.message.attempt_count,
                request_id = claim.message.request_id.as_deref(),
            );
            tokio::spawn(
                async move {
                    worker.process(claim).await;
                    drop(permit);
                    // A slot is free: there may be more due work to claim.
                    wake.notify_one();
                }
                .instrument(span),
            );
        }
        Ok(count)
    }

    /// How long an idle dispatcher may sleep: until the next retry is due, at most the poll
    /// interval (the safety net for a missed wake-up).
    async fn idle_sleep(&self) -> Duration {
        match self.store.next_due_at().await {
            Ok(Some(due)) => (due - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(_) => STORE_ERROR_BACKOFF,
        }
    }
}

struct Worker {
    store: Arc<dyn MessageStore>,
    provider: Arc<dyn SmsProvider>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
}

impl Worker {
    async fn process(&self, ClaimedMessage { message, claim }: ClaimedMessage) {
        let started_at = self.clock.now();
        let (attempt, outcome) = if message.is_stale(started_at) {
            (None, DispatchOutcome::Expired)
        } else {
            let result = self.provider.send(&outbound(&message, started_at)).await;
            let finished_at = self.clock.now();
            let (attempt, outcome) = self.judge(&message, started_at, finished_at, result);
            (Some(attempt), outcome)
        };
        let status = outcome.status();
        match self
            .store
            .finish(claim, message.id, attempt, outcome, self.clock.now())
            .await
        {
            Ok(true) => tracing::info!(%status, "message dispatched"),
            Ok(false) => tracing::warn!("claim lost before the outcome was recorded"),
            // The lease will run out and the message be claimed again: at least once.
            Err(error) => tracing::error!(%error, "cannot record the outcome of a send"),
        }
    }

    /// Turns the provider's answer into the attempt record and the message's next step.
    fn judge(
        &self,
        message: &Message,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        result: Result<ports::ProviderReceipt, ProviderError>,
    ) -> (Attempt, DispatchOutcome) {
        let attempt = |outcome, error: Option<&ProviderError>| Attempt {
            number: message.attempt_count,
            started_at,
            finished_at,
            outcome,
            http_status: error.and_then(|e| e.http_status),
            error_code: error.and_then(|e| e.code.clone()),
            error_message: error.map(|e| e.message.clone()),
        };
        match result {
            Ok(receipt) => (
                attempt(AttemptOutcome::Sent, None),
                DispatchOutcome::Sent {
                    provider_sid: receipt.provider_sid,
                    segments: receipt.segments,
                },
            ),
            Err(error)
                if error.is_retryable()
                    && self.config.retry.allows_another(message.attempt_count) =>
            {
                let delay = self.config.retry.delay(
                    message.attempt_count,
                    rand::random::<f64>(),
                    error.retry_after,
                );
                let at = finished_at + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                (
                    attempt(AttemptOutcome::RetryableError, Some(&error)),
                    DispatchOutcome::Retry {
                        at,
                        error_code: error.code.clone(),
                        error_message: error.message.clone(),
                    },
                )
            }
            Err(error) => {
                let kind = if error.is_retryable() {
                    AttemptOutcome::RetryableError
                } else {
                    AttemptOutcome::PermanentError
                };
                (
                    attempt(kind, Some(&error)),
                    DispatchOutcome::Failed {
                        error_code: error.code.clone(),
                        error_message: error.message.clone(),
                    },
                )
            }
        }
    }
}

fn outbound(message: &Message, now: DateTime<Utc>) -> OutboundMessage {
    OutboundMessage {
        message_id: message.id,
        to: message.to.clone(),
        channel: message.channel,
        body: message.body.clone(),
        validity: message
            .send_before
            .and_then(|deadline| (deadline - now).to_std().ok()),
        sensitive: message.verification_id.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::{Channel, MessageId, MessageStatus, PhoneNumber, Priority, RetryPolicy};
    use ports::{
        ClaimToken, MockClock, MockMessageStore, MockSmsProvider, ProviderErrorKind,
        ProviderReceipt,
    };

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn claimed(attempt_count: u32, send_before: Option<DateTime<Utc>>) -> ClaimedMessage {
        ClaimedMessage {
            message: Message {
                id: MessageId::generate(),
                to: PhoneNumber::parse("+15551234567").unwrap(),
                channel: Channel::Sms,
                template: None,
                body: "Hello".into(),
                segments: 1,
                priority: Priority::Normal,
                status: MessageStatus::Sending,
                api_key: "auth".into(),
                idempotency_key: None,
                verification_id: None,
                send_before,
                provider_sid: None,
                error_code: None,
                error_message: None,
                attempt_count,
                next_attempt_at: now(),
                request_id: Some("req-1".into()),
                created_at: now(),
                updated_at: now(),
            },
            claim: ClaimToken(7),
        }
    }

    fn provider_error(kind: ProviderErrorKind, status: u16, code: &str) -> ProviderError {
        ProviderError {
            kind,
            http_status: Some(status),
            code: Some(code.into()),
            message: format!("error {code}"),
            more_info: None,
            retry_after: None,
        }
    }

    fn worker(provider: MockSmsProvider, store: MockMessageStore) -> Worker {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Worker {
            store: Arc::new(store),
            provider: Arc::new(provider),
            clock: Arc::new(clock),
            config: DispatchConfig {
                concurrency: 1,
                poll_interval: Duration::from_secs(5),
                lease: Duration::from_secs(60),
                retry: RetryPolicy::default(),
            },
        }
    }

    fn provider_answering(result: Result<ProviderReceipt, ProviderError>) -> MockSmsProvider {
        let mut provider = MockSmsProvider::new();
        provider
            .expect_send()
            .times(1)
            .returning(move |_| result.clone());
        provider
    }

    /// A store that expects exactly one `finish` and checks it with `check`.
    fn store_expecting(
        check: impl Fn(&Option<Attempt>, &DispatchOutcome) + Send + Sync + 'static,
    ) -> MockMessageStore {
        let mut store = MockMessageStore::new();
        store
            .expect_finish()
            .times(1)
            .returning(move |claim, _, attempt, outcome, _| {
                assert_eq!(claim, ClaimToken(7));
                check(&attempt, &outcome);
                Ok(true)
            });
        store
    }

    #[tokio::test]
    async fn an_accepted_message_is_recorded_as_sent_with_the_provider_sid() {
        let provider = provider_answering(Ok(ProviderReceipt {
            provider_sid: "SM1".into(),
            segments: Some(1),
            price: None,
        }));
        let store = store_expecting(|attempt, outcome| {
            assert_eq!(attempt.as_ref().unwrap().outcome, AttemptOutcome::Sent);
            assert_eq!(
                outcome,
                &DispatchOutcome::Sent {
                    provider_sid: "SM1".into(),
                    segments: Some(1)
                }
            );
        });
        worker(provider, store).process(claimed(1, None)).await;
    }

    #[tokio::test]
    async fn a_temporary_failure_is_queued_again_with_backoff() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Retryable,
            503,
            "503",
        )));
        let store = store_expecting(|attempt, outcome| {
            let attempt = attempt.as_ref().unwrap();
            assert_eq!(attempt.outcome, AttemptOutcome::RetryableError);
            assert_eq!(attempt.http_status, Some(503));
            let DispatchOutcome::Retry { at, .. } = outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            // Second attempt: full jitter under a 4 s ceiling.
            assert!(*at >= now() && *at <= now() + TimeDelta::seconds(4), "{at}");
        });
        worker(provider, store).process(claimed(2, None)).await;
    }

    #[tokio::test]
    async fn a_longer_retry_after_is_honoured() {
        let mut error = provider_error(ProviderErrorKind::Retryable, 429, "20429");
        error.retry_after = Some(Duration::from_secs(120));
        let store = store_expecting(|_, outcome| {
            let DispatchOutcome::Retry { at, error_code, .. } = outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            assert_eq!(*at, now() + TimeDelta::seconds(120));
            assert_eq!(error_code.as_deref(), Some("20429"));
        });
        worker(provider_answering(Err(error)), store)
            .process(claimed(1, None))
            .await;
    }

    #[tokio::test]
    async fn a_permanent_failure_fails_at_once_with_its_code() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Permanent,
            400,
            "21211",
        )));
        let store = store_expecting(|attempt, outcome| {
            assert_eq!(
                attempt.as_ref().unwrap().outcome,
                AttemptOutcome::PermanentError
            );
            assert_eq!(
                outcome,
                &DispatchOutcome::Failed {
                    error_code: Some("21211".into()),
                    error_message: "error 21211".into()
                }
            );
        });
        worker(provider, store).process(claimed(1, None)).await;
    }

    #[tokio::test]
    async fn the_last_attempt_fails_instead_of_retrying() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Retryable,
            500,
            "500",
        )));
        let store = store_expecting(|_, outcome| {
            assert!(
                matches!(outcome, DispatchOutcome::Failed { .. }),
                "{outcome:?}"
            );
        });
        worker(provider, store)
            .process(claimed(RetryPolicy::default().max_attempts, None))
            .await;
    }

    #[tokio::test]
    async fn an_expired_code_is_never_sent() {
        let mut provider = MockSmsProvider::new();
        provider.expect_send().never();
        let store = store_expecting(|attempt, outcome| {
            assert!(attempt.is_none());
            assert_eq!(outcome, &DispatchOutcome::Expired);
        });
        worker(provider, store)
            .process(claimed(1, Some(now() - TimeDelta::seconds(1))))
            .await;
    }

    #[tokio::test]
    async fn a_code_is_sent_with_its_remaining_lifetime_as_validity() {
        let mut provider = MockSmsProvider::new();
        provider
            .expect_send()
            .withf(|message| message.validity == Some(Duration::from_secs(300)))
            .times(1)
            .returning(|_| {
                Ok(ProviderReceipt {
                    provider_sid: "SM2".into(),
                    segments: None,
                    price: None,
                })
            });
        let store = store_expecting(|_, _| {});
        worker(provider, store)
            .process(claimed(1, Some(now() + TimeDelta::minutes(5))))
            .await;
    }
}
