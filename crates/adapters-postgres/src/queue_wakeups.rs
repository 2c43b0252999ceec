//! [`ports::QueueWakeups`] over `LISTEN` on [`crate::QUEUE_CHANNEL`]: the other half of
//! `queue_notifier`, which sends the `NOTIFY` after messages are queued.

use async_trait::async_trait;
use ports::{QueueWakeups, StoreError};
use sqlx::postgres::PgListener;

use crate::PgStore;

/// Wakes this instance for messages any instance queued. It listens from its first
/// [`QueueWakeups::next`] on, and listens again after a failure.
pub struct PgQueueWakeups {
    store: PgStore,
    listener: Option<PgListener>,
}

impl PgQueueWakeups {
    pub(crate) fn new(store: PgStore) -> Self {
        Self {
            store,
            listener: None,
        }
    }
}

#[async_trait]
impl QueueWakeups for PgQueueWakeups {
    async fn next(&mut self) -> Result<(), StoreError> {
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
            Ok(_) => Ok(()),
            Err(error) => {
                self.listener = None;
                Err(StoreError::Unavailable(Box::new(error)))
            }
        }
    }
}
