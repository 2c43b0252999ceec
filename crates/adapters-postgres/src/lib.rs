//! The production store: [`ports::MessageStore`], [`ports::VerificationStore`] and
//! [`ports::RateLimiter`] on PostgreSQL through sqlx, with the schema in `migrations/postgres`.
//!
//! Several service instances share one database: claims use `FOR UPDATE SKIP LOCKED` and a
//! lease, and every write that queues a message is followed by a `NOTIFY` on [`QUEUE_CHANNEL`]
//! (one per burst, see `queue_notifier`) so that idle dispatchers on every instance wake at once. Queries are checked at run time (by the
//! tests), so the build needs no database.
//!
//! This crate must never depend on axum, reqwest, `app` or another adapter: it speaks domain
//! types to the use cases and sqlx to the database, nothing else.

mod deliveries;
mod messages;
mod queue_notifier;
mod rate_limits;
mod rows;
#[cfg(feature = "test-support")]
pub mod testing;
mod verifications;

use std::sync::Arc;
use std::time::Duration;

use ports::StoreError;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

/// The channel notified after writes that queue messages; the payload is the id of the newest
/// of the messages a notification stands for.
pub const QUEUE_CHANNEL: &str = "sms_notify_queue";

/// The messages and verifications in PostgreSQL. Cheap to clone: clones share one pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    queue_notifier: Arc<queue_notifier::QueueNotifier>,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    #[error("cannot connect to PostgreSQL")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply the PostgreSQL migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot listen for queue notifications")]
    Listen(#[source] sqlx::Error),
}

impl PgStore {
    /// Connects and brings the schema up to date, so that a new version migrates at start.
    /// Instances starting together are safe: sqlx serializes migrations with an advisory lock.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, PgStoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await
            .map_err(PgStoreError::Connect)?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(PgStoreError::Migrate)?;
        Ok(Self {
            queue_notifier: Arc::new(queue_notifier::QueueNotifier::start(pool.clone())),
            pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(rows::store_error)?;
        Ok(())
    }

    /// A listener already subscribed to [`QUEUE_CHANNEL`]: each notification means new work
    /// may be due. It reconnects by itself; notifications sent while it was disconnected are
    /// lost, so a dispatcher still looks at [`ports::MessageStore::next_due_at`] after waking.
    pub async fn queue_listener(&self) -> Result<PgListener, PgStoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(PgStoreError::Listen)?;
        listener
            .listen(QUEUE_CHANNEL)
            .await
            .map_err(PgStoreError::Listen)?;
        Ok(listener)
    }
}
