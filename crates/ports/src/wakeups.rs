//! Word that messages were queued by another instance sharing the store, so that this
//! instance's dispatcher looks for them at once rather than at its next poll.

use async_trait::async_trait;

use crate::StoreError;

/// The wake-ups one instance receives from the others that share its queue (PostgreSQL's
/// `LISTEN`/`NOTIFY`). A message queued in this process wakes its own dispatcher directly;
/// this port carries only what is queued elsewhere. A word sent while the feed is broken is
/// not replayed: the dispatcher's poll finds the message a little later.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait QueueWakeups: Send {
    /// Completes at the next word that messages were queued.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the feed cannot be opened or broke; the next call opens
    /// it again.
    async fn next(&mut self) -> Result<(), StoreError>;
}
