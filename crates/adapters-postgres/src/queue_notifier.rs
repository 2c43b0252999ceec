//! Tells the other instances, with one `NOTIFY` for each burst of commits rather than one per
//! write, that messages were queued (their dispatchers wake) or that a change that may have
//! recorded client webhook events committed (their deliverers wake).
//!
//! A `NOTIFY` inside a transaction takes a database-wide lock at commit and holds it through the
//! commit's flush to disk, so transactions that notify commit one at a time: with one per
//! enqueue, `POST /v1/messages` could not accept more messages per second than the disk has
//! flushes (docs/performance.md). The events' triggers write on the hottest tables, so they
//! notify nobody for the same reason. Here each write pokes a notifier after its commit, and a
//! background task sends the `NOTIFY` on its own; pokes that arrive while one is being sent are
//! answered by the next, which starts after them, so nothing is committed after the last
//! wake-up it needed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::MessageId;
use sqlx::PgPool;
use tokio::sync::Notify;

/// Shared by the clones of one store; dropping the last one stops its task.
#[derive(Debug)]
pub(crate) struct QueueNotifier {
    pending: Arc<Pending>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Pending {
    poked: Notify,
    /// The newest payload poked since the last `NOTIFY`.
    newest: Mutex<Option<String>>,
}

impl QueueNotifier {
    /// Notifies `channel` after pokes, at most once per `gap` (none for the queue: a code goes
    /// out at once; a little for events, whose pokes come with every status a message takes).
    pub(crate) fn start(pool: PgPool, channel: &'static str, gap: Duration) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(notify_on_poke(pool, channel, gap, pending.clone()));
        Self { pending, task }
    }

    /// Says that `id` was committed to the queue; the `NOTIFY` follows shortly.
    pub(crate) fn queued(&self, id: MessageId) {
        self.poke(id.to_string());
    }

    /// Says that something was committed; the `NOTIFY`, carrying `payload`, follows shortly.
    pub(crate) fn poke(&self, payload: String) {
        *self
            .pending
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(payload);
        // Stores a permit when the task is busy: the pokes of a burst make one more `NOTIFY`.
        self.pending.poked.notify_one();
    }
}

impl Drop for QueueNotifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn notify_on_poke(pool: PgPool, channel: &'static str, gap: Duration, pending: Arc<Pending>) {
    loop {
        pending.poked.notified().await;
        let newest = pending
            .newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(newest.unwrap_or_default())
            .execute(&pool)
            .await
        {
            // Other instances find the work at their next poll, as after a lost notification.
            tracing::warn!(%error, channel, "cannot notify other instances");
        }
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
}
