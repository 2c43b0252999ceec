//! Wakes the dispatchers of every instance after messages are queued, with one `NOTIFY` for
//! each burst of commits rather than one per message.
//!
//! A `NOTIFY` inside a transaction takes a database-wide lock at commit and holds it through the
//! commit's flush to disk, so transactions that notify commit one at a time: with one per
//! enqueue, `POST /v1/messages` could not accept more messages per second than the disk has
//! flushes (docs/performance.md). Here
//! each write pokes this notifier after its commit, and a background task sends the `NOTIFY`
//! on its own; pokes that arrive while one is being sent are answered by the next, which
//! starts after them, so a message is never committed after the last wake-up it needed.

use std::sync::{Arc, Mutex, PoisonError};

use domain::MessageId;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::QUEUE_CHANNEL;

/// Shared by the clones of one store; dropping the last one stops its task.
#[derive(Debug)]
pub(crate) struct QueueNotifier {
    pending: Arc<Pending>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Pending {
    poked: Notify,
    /// The newest message queued since the last `NOTIFY`: its payload.
    newest: Mutex<Option<MessageId>>,
}

impl QueueNotifier {
    pub(crate) fn start(pool: PgPool) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(notify_on_poke(pool, pending.clone()));
        Self { pending, task }
    }

    /// Says that `id` was committed to the queue; the `NOTIFY` follows shortly.
    pub(crate) fn queued(&self, id: MessageId) {
        *self
            .pending
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(id);
        // Stores a permit when the task is busy: the pokes of a burst make one more `NOTIFY`.
        self.pending.poked.notify_one();
    }
}

impl Drop for QueueNotifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notify_on_poke(pool: PgPool, pending: Arc<Pending>) {
    loop {
        pending.poked.notified().await;
        let newest = pending
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let payload = newest.map(|id| id.to_string()).unwrap_or_default();
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(QUEUE_CHANNEL)
            .bind(payload)
            .execute(&pool)
            .await
        {
            // Other instances find the message at their next poll, as after a lost notification.
            tracing::warn!(%error, "cannot notify other instances of queued messages");
        }
    }
}
