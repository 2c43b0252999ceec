//! Reconciliation: a message still `sent` some time after it was sent has probably lost its
//! status callback, so its provider is asked what became of it and the answer is applied like a
//! callback would be. Runs on every instance; the store's claim (`claim_unconfirmed`: skip
//! locked, and a hold) keeps two instances from looking up the same message.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use domain::Message;
use ports::{Clock, DeliveryUpdate, MessageStore, StatusLookup, StoreError};
use tokio::sync::watch;

use super::backoff::Backoff;

/// Most messages looked up per provider and round, so that a backlog is taken in bites.
const BATCH: u32 = 100;
/// Messages sent longer ago than this are no longer looked up: the provider has long decided,
/// and one that never reports must not be asked about for ever.
const MAX_AGE: TimeDelta = TimeDelta::days(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How long after sending a message without a final status is looked up, and how long
    /// before it is looked up again when its provider had nothing final to say.
    pub after: Duration,
    /// How often each instance looks for such messages.
    pub interval: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(600),
            interval: Duration::from_secs(60),
        }
    }
}

pub struct Reconciler {
    store: Arc<dyn MessageStore>,
    /// One per provider that can be asked (Vonage's SMS API cannot).
    lookups: Vec<Arc<dyn StatusLookup>>,
    clock: Arc<dyn Clock>,
    config: ReconcileConfig,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn MessageStore>,
        lookups: Vec<Arc<dyn StatusLookup>>,
        clock: Arc<dyn Clock>,
        config: ReconcileConfig,
    ) -> Self {
        Self {
            store,
            lookups,
            clock,
            config,
        }
    }

    /// Reconciles every `interval` until `shutdown` turns true; a full batch is followed by the
    /// next at once. After the database fails, the next round comes sooner, backing off up to
    /// the interval: the statuses that came in meanwhile are recovered soon after it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.lookups.is_empty() {
            return;
        }
        let mut backoff = Backoff::new();
        while !*shutdown.borrow() {
            let round = self.round().await;
            let pause = if round.store_failed {
                backoff.failed().min(self.config.interval)
            } else if round.largest >= BATCH as usize {
                backoff.succeeded();
                Duration::ZERO
            } else {
                backoff.succeeded();
                self.config.interval
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Looks up one batch of unconfirmed messages per provider and applies what the providers
    /// say. Returns how many messages were looked up in the largest batch.
    pub async fn reconcile_once(&self) -> usize {
        self.round().await.largest
    }

    /// One round; it ends at the first failure of the store, which the messages after it
    /// would each meet again.
    async fn round(&self) -> Round {
        let mut largest = 0;
        for lookup in &self.lookups {
            let now = self.clock.now();
            let after = TimeDelta::from_std(self.config.after).unwrap_or(TimeDelta::MAX);
            let claimed = self
                .store
                .claim_unconfirmed(
                    lookup.provider(),
                    now - MAX_AGE,
                    now - after,
                    now,
                    BATCH,
                    now + after,
                )
                .await;
            match claimed {
                Ok(messages) => {
                    largest = largest.max(messages.len());
                    for message in messages {
                        if let Err(error) = self.reconcile(lookup.as_ref(), message).await {
                            tracing::error!(%error, "cannot record a reconciled status");
                            return Round::store_failed(largest);
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot find the messages to reconcile");
                    return Round::store_failed(largest);
                }
            }
        }
        Round {
            largest,
            store_failed: false,
        }
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.id, provider = lookup.provider()))]
    async fn reconcile(
        &self,
        lookup: &dyn StatusLookup,
        message: Message,
    ) -> Result<(), StoreError> {
        let Some(sid) = message.provider_sid.as_deref() else {
            return Ok(());
        };
        let event = match lookup.lookup(sid, self.clock.now()).await {
            Ok(event) => event,
            // Held until the next turn; nothing is lost.
            Err(error) => {
                tracing::warn!(
                    provider_code = error.code.as_deref(),
                    http_status = error.http_status,
                    "status lookup failed; asking again later"
                );
                return Ok(());
            }
        };
        let status = event.status;
        match self.store.record_delivery(sid, event, None).await? {
            DeliveryUpdate::Applied(message) => tracing::info!(
                %status,
                to = %message.to.masked(),
                error_code = message.error_code.as_deref(),
                "delivery status reconciled: its callback never came"
            ),
            _ => tracing::debug!(%status, "nothing final yet; asking again later"),
        }
        Ok(())
    }
}

/// What one round of [`Reconciler`] came to.
struct Round {
    /// How many messages were looked up in the largest batch.
    largest: usize,
    /// The store failed: the round stopped there.
    store_failed: bool,
}

impl Round {
    fn store_failed(largest: usize) -> Self {
        Self {
            largest,
            store_failed: true,
        }
    }
}
