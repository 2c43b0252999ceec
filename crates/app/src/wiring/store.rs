//! The one place that picks a store adapter for `DATABASE_URL`: the service opens its
//! database through it, and the operator's commands migrate and inspect theirs through it too,
//! so that a configuration always means the same store.

use std::path::PathBuf;
use std::sync::Arc;

use adapters_postgres::PgStore;
use adapters_sqlite::SqliteStore;
use async_trait::async_trait;
use ports::QueueWakeups;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;

use crate::usecases::StorePorts;
use crate::wiring::config::DatabaseConfig;

/// The database a configuration names, before it is opened.
#[async_trait]
pub trait Database: Send + Sync {
    /// Opens it, bringing its schema up to date.
    async fn open(&self) -> Result<Stores, DatabaseError>;
    /// Applies the migrations it lacks and names them, none when it was up to date.
    async fn migrate(&self) -> Result<Vec<String>, DatabaseError>;
    /// Names the migrations it lacks without applying them; `None` when it does not exist yet
    /// (an embedded database's file, which the first start creates).
    async fn pending_migrations(&self) -> Result<Option<Vec<String>>, DatabaseError>;
    /// What an operator should look at when it cannot be reached.
    fn advice(&self) -> &'static str;
}

/// An opened database, seen through each port.
pub struct Stores {
    pub ports: StorePorts,
    /// Set when other instances may share the queue: their words that messages were queued or
    /// events recorded.
    pub wakeups: Option<Box<dyn QueueWakeups>>,
    /// Notified by the store after each commit of this process that may have recorded client
    /// webhook events: the deliverer waits on it.
    pub events_written: Arc<Notify>,
}

/// Why the database could not be opened, migrated or read.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// `DATABASE_URL` is not a URL the driver accepts: a setting to fix, not an outage.
    #[error("{0}")]
    InvalidUrl(String),
    /// The adapter's error, shown with its sources as they are.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// The database `config` names: PostgreSQL, shared by every instance, or the embedded SQLite
/// file of one.
pub fn chosen(config: &DatabaseConfig) -> Box<dyn Database> {
    match config {
        DatabaseConfig::Postgres { url, pool_size } => Box::new(Postgres {
            url: url.clone(),
            pool_size: *pool_size,
        }),
        DatabaseConfig::Sqlite { path } => Box::new(Sqlite { path: path.clone() }),
    }
}

struct Postgres {
    url: SecretString,
    pool_size: u32,
}

#[async_trait]
impl Database for Postgres {
    async fn open(&self) -> Result<Stores, DatabaseError> {
        let store = PgStore::connect(self.url.expose_secret(), self.pool_size)
            .await
            .map_err(postgres_failed)?;
        Ok(Stores {
            wakeups: Some(Box::new(store.queue_wakeups())),
            events_written: store.events_written(),
            ports: StorePorts::of(Arc::new(store)),
        })
    }

    async fn migrate(&self) -> Result<Vec<String>, DatabaseError> {
        PgStore::migrate(self.url.expose_secret())
            .await
            .map_err(postgres_failed)
    }

    async fn pending_migrations(&self) -> Result<Option<Vec<String>>, DatabaseError> {
        PgStore::pending_migrations(self.url.expose_secret())
            .await
            .map(Some)
            .map_err(postgres_failed)
    }

    fn advice(&self) -> &'static str {
        "check DATABASE_URL and that the server accepts connections"
    }
}

struct Sqlite {
    path: PathBuf,
}

#[async_trait]
impl Database for Sqlite {
    async fn open(&self) -> Result<Stores, DatabaseError> {
        let store = SqliteStore::open(&self.path).await.map_err(failed)?;
        // No word comes from elsewhere: a process that queues a message in the file runs the
        // dispatcher that sends it (the service, or the CLI's own).
        Ok(Stores {
            events_written: store.events_written(),
            ports: StorePorts::of(Arc::new(store)),
            wakeups: None,
        })
    }

    async fn migrate(&self) -> Result<Vec<String>, DatabaseError> {
        SqliteStore::migrate(&self.path).await.map_err(failed)
    }

    async fn pending_migrations(&self) -> Result<Option<Vec<String>>, DatabaseError> {
        // Opening would create the file: a first start does that.
        if !self.path.exists() {
            return Ok(None);
        }
        SqliteStore::pending_migrations(&self.path)
            .await
            .map(Some)
            .map_err(failed)
    }

    fn advice(&self) -> &'static str {
        "check DATABASE_URL and the file's permissions"
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> DatabaseError {
    DatabaseError::Failed(Box::new(error))
}

fn postgres_failed(error: adapters_postgres::PgStoreError) -> DatabaseError {
    match error {
        adapters_postgres::PgStoreError::InvalidUrl(problem) => DatabaseError::InvalidUrl(problem),
        error => failed(error),
    }
}
