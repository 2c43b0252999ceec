//! Word from the other instances sharing the store that they queued messages or recorded
//! client webhook events, so that this instance's dispatcher or webhook deliverer looks at
//! once rather than at its next poll.

use async_trait::async_trait;

use crate::StoreError;

/// What another instance's word was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// Messages were queued: the dispatcher looks.
    Queued,
    /// A change that may have recorded client webhook events committed: the deliverer looks.
    Events,
}

/// The wake-ups one instance receives from the others that share its queue (PostgreSQL's
/// `LISTEN`/`NOTIFY`). What this process queues or records wakes its own workers directly;
/// this port carries only what happened elsewhere. A word sent while the feed is broken is
/// not replayed: the workers' polls find the work a little later.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait QueueWakeups: Send {
    /// Completes at the next word from another instance, saying what it was about.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the feed cannot be opened or broke; the next call opens
    /// it again.
    async fn next(&mut self) -> Result<Wakeup, StoreError>;
}
