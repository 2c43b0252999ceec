//! [`ports::QueueWakeups`] over `LISTEN` on [`crate::QUEUE_CHANNEL`] and
//! [`crate::EVENTS_CHANNEL`]: the other half of `queue_notifier`, which sends the `NOTIFY`s.

use std::sync::Arc;

use async_trait::async_trait;
use ports::{QueueWakeups, StoreError, Wakeup};
use sqlx::postgres::PgListener;

use crate::{PgStore, EVENTS_CHANNEL};

/// Wakes this instance for messages another instance queued, or events it may have recorded.
/// It listens from its first [`QueueWakeups::next`] on, and listens again after a failure.
pub struct PgQueueWakeups {
    store: PgStore,
    /// This instance's name on [`EVENTS_CHANNEL`]: its own word woke its deliverer already.
    instance: Arc<str>,
    listener: Option<PgListener>,
}

impl PgQueueWakeups {
    pub(crate) fn new(store: PgStore, instance: Arc<str>) -> Self {
        Self {
            store,
            instance,
            listener: None,
        }
    }
}

#[async_trait]
impl QueueWakeups for PgQueueWakeups {
    async fn next(&mut self) -> Result<Wakeup, StoreError> {
        loop {
            let listener = match &mut self.listener {
                Some(listener) => listener,
                None => self.listener.insert(
                    self.store
                        .queue_listener()
                        .await
                        .map_err(|error| StoreError::Unavailable(Box::new(error)))?,
                ),
            };
            match listener.recv().await {
                Ok(notification) if notification.channel() == EVENTS_CHANNEL => {
                    if notification.payload() != &*self.instance {
                        return Ok(Wakeup::Events);
                    }
                }
                Ok(_) => return Ok(Wakeup::Queued),
                Err(error) => {
                    self.listener = None;
                    return Err(StoreError::Unavailable(Box::new(error)));
                }
            }
        }
    }
}
