//! The embedded default store: [`ports::MessageStore`], [`ports::VerificationStore`],
//! [`ports::RateLimiter`], [`ports::FraudStore`], [`ports::VerifyServiceStore`] and
//! [`ports::WebhookStore`] in a SQLite file through sqlx, with the
//! schema in `migrations/sqlite`, so that the service runs with no database server installed.
//!
//! SQLite has one writer at a time: every write goes through the store's one writer connection
//! (readers have a pool of their own), and is a single statement or a transaction begun with
//! `BEGIN IMMEDIATE`, which takes the write lock before reading. Writers queue for that
//! connection in order rather than on SQLite's busy handler, which sleeps up to 100 ms between
//! tries. One process owns the file, so waking its dispatcher on new work is that process's
//! business, not the store's; its webhook deliverer waits on [`SqliteStore::events_written`],
//! which each commit that may have recorded client webhook events notifies.
//!
//! This crate must never depend on axum, reqwest, `app` or another adapter: it speaks domain
//! types to the use cases and sqlx to the database, nothing else.

mod deliveries;
mod fraud;
mod lifecycle;
mod messages;
mod rate_limits;
mod reports;
mod rollups;
mod rows;
mod verifications;
mod verify_services;
mod webhooks;
mod workflows;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ports::StoreError;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a writer waits for the lock before the store reports itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Readers run in parallel in WAL mode.
const MAX_READERS: u32 = 4;

/// The messages and verifications in SQLite. Cheap to clone: clones share its connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// For reads.
    pool: SqlitePool,
    /// Every write, one at a time: with two connections writing, the one that finds the lock
    /// taken sleeps in SQLite's busy handler (1, 2, 5 ... 100 ms) instead of being woken when
    /// it is free, which held the dispatcher well under the provider's ceiling
    /// (`docs/performance.md`, "SQLite's one writer").
    writer: SqlitePool,
    batched: Arc<writes::Batched>,
    /// Poked after each commit that may have recorded events.
    events_written: Arc<tokio::sync::Notify>,
}

/// The transaction every multi-statement write uses: it takes the write lock before reading,
/// so it never has to upgrade a read lock another writer is waiting on (which SQLite answers
/// with an immediate `SQLITE_BUSY`, whatever the busy timeout).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SqliteStoreError {
    #[error("cannot create the directory {}", path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the SQLite database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the SQLite migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl SqliteStore {
    /// Opens the database file, creating it and its directory if needed, and brings the schema
    /// up to date.
    pub async fn open(path: &Path) -> Result<Self, SqliteStoreError> {
        let writer = Self::pool_at(path, 1).await?;
        Self::migrated(Self::pool_at(path, MAX_READERS).await?, writer).await
    }

    /// Names the migrations (`0006 name`) the file still lacks, without applying them.
    pub async fn pending_migrations(path: &Path) -> Result<Vec<String>, SqliteStoreError> {
        let pool = Self::pool_at(path, 1).await?;
        let pending = pending_in(&pool, path).await;
        pool.close().await;
        pending
    }

    /// Brings the schema of the file up to date (creating it if needed) and names the
    /// migrations this call applied, none when it was up to date, for the operator's `migrate`
    /// command.
    pub async fn migrate(path: &Path) -> Result<Vec<String>, SqliteStoreError> {
        let pool = Self::pool_at(path, 1).await?;
        let pending = pending_in(&pool, path).await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(SqliteStoreError::Migrate)?;
        pool.close().await;
        Ok(pending)
    }

    async fn pool_at(path: &Path, connections: u32) -> Result<SqlitePool, SqliteStoreError> {
        if let Some(directory) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(directory).map_err(|source| {
                SqliteStoreError::CreateDirectory {
                    path: directory.to_owned(),
                    source,
                }
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses no committed data on a process crash, only on power loss.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await
            .map_err(|source| SqliteStoreError::Open {
                path: path.to_owned(),
                source,
            })
    }

    /// A private database in memory, for tests. It lives in one connection that the pool never
    /// closes, so that every query sees the same database: reads and writes share it.
    pub async fn in_memory() -> Result<Self, SqliteStoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| SqliteStoreError::Open {
                path: PathBuf::from(":memory:"),
                source,
            })?;
        Self::migrated(pool.clone(), pool).await
    }

    async fn migrated(pool: SqlitePool, writer: SqlitePool) -> Result<Self, SqliteStoreError> {
        MIGRATOR
            .run(&writer)
            .await
            .map_err(SqliteStoreError::Migrate)?;
        let batched = Arc::new(writes::Batched::start(&writer));
        Ok(Self {
            pool,
            writer,
            batched,
            events_written: Arc::new(tokio::sync::Notify::new()),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Notified (one permit kept) after each commit that may have recorded client webhook
    /// events: what the process's deliverer waits on between its polls.
    pub fn events_written(&self) -> Arc<tokio::sync::Notify> {
        self.events_written.clone()
    }

    pub(crate) fn events_may_be_recorded(&self) {
        self.events_written.notify_one();
    }

    /// A write transaction on the writer connection, holding the write lock from its start.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(rows::store_error)
    }

    /// Closes the file's connections, once what they are running is done.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(rows::store_error)?;
        Ok(())
    }
}

async fn pending_in(pool: &SqlitePool, path: &Path) -> Result<Vec<String>, SqliteStoreError> {
    let mut connection = pool
        .acquire()
        .await
        .map_err(|source| SqliteStoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    connection
        .ensure_migrations_table()
        .await
        .map_err(SqliteStoreError::Migrate)?;
    let applied = connection
        .list_applied_migrations()
        .await
        .map_err(SqliteStoreError::Migrate)?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| {
            migration.migration_type.is_up_migration()
                && !applied.iter().any(|done| done.version == migration.version)
        })
        .map(|migration| format!("{:04} {}", migration.version, migration.description))
        .collect())
}
