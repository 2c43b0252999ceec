//! The production store: [`ports::MessageStore`], [`ports::VerificationStore`],
//! [`ports::RateLimiter`], [`ports::FraudStore`], [`ports::VerifyServiceStore`] and
//! [`ports::WebhookStore`] on PostgreSQL through sqlx, with the
//! schema in `migrations/postgres`.
//!
//! Several service instances share one database: claims use `FOR UPDATE SKIP LOCKED` and a
//! lease, and every write that queues a message is followed by a `NOTIFY` on [`QUEUE_CHANNEL`]
//! (one per burst, see `queue_notifier`) so that idle dispatchers on every instance wake at once;
//! every change that may record client webhook events wakes this instance's deliverer
//! ([`PgStore::events_written`]) and, on [`EVENTS_CHANNEL`], the other instances' ones. Queries are checked at run time (by the
//! tests), so the build needs no database.
//!
//! This crate must never depend on axum, reqwest, `app` or another adapter: it speaks domain
//! types to the use cases and sqlx to the database, nothing else.

mod connections;
mod deliveries;
mod fraud;
mod lifecycle;
mod messages;
mod partitions;
mod queue_notifier;
mod queue_wakeups;
mod rate_limits;
mod reports;
mod rollups;
mod rows;
#[cfg(feature = "test-support")]
pub mod testing;
mod verifications;
mod verify_services;
mod webhooks;
mod workflows;
mod writes;

pub use queue_wakeups::PgQueueWakeups;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ports::StoreError;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The channel notified after writes that queue messages; the payload is the id of the newest
/// of the messages a notification stands for.
pub const QUEUE_CHANNEL: &str = "sms_notify_queue";

/// The channel notified after changes that may have recorded client webhook events; the payload
/// names the instance that notified, which does not wake itself a second time.
pub const EVENTS_CHANNEL: &str = "sms_notify_events";

/// The least time between two notifications on [`EVENTS_CHANNEL`] from one instance: every
/// message's status change pokes it, and a wake-up a little later costs a client nothing.
const EVENTS_NOTIFY_GAP: Duration = Duration::from_millis(5);

/// How often a deliverer that finds enabled endpoints asks again whether any is left.
const ENDPOINTS_RECHECK: Duration = Duration::from_secs(1);

/// The messages and verifications in PostgreSQL. Cheap to clone: clones share one pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The hot paths' connections (claims, lookups of pending verifications, batched writes).
    hot: connections::Connections,
    queue_notifier: Arc<queue_notifier::QueueNotifier>,
    events_notifier: Arc<queue_notifier::QueueNotifier>,
    /// Poked after each commit that may have recorded events: this instance's deliverer waits
    /// on it ([`PgStore::events_written`]).
    events_written: Arc<tokio::sync::Notify>,
    /// Whether an enabled webhook endpoint may exist. While the deliverer's last empty look
    /// found none, changes that would record events wake nobody (nothing could be delivered,
    /// and every message's status change woke the deliverer for a look); its poll stands in.
    endpoints: Arc<AtomicBool>,
    /// When a look last asked whether one exists: while one does, at most once a second.
    endpoints_asked: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Names this store's notifications on [`EVENTS_CHANNEL`], which its own listener skips.
    instance: Arc<str>,
    batched: Arc<writes::Batched>,
    queue_floor: Arc<partitions::QueueFloor>,
}

/// How long the first connection may take: a server that has not answered by then is out of
/// reach, and the operator hears so now rather than after the pool's own, longer wait.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a query waits for a connection, a new connection's setup included (sqlx retries
/// a refused connect until then): while the database is down every caller, an API request
/// above all, hears so within it, where a longer wait would hold the request until it passed.
/// A pool exhausted for this long under load answers the same, which sheds the excess.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The pool's connections a service instance holds for good: the `LISTEN` of
/// [`PgStore::queue_wakeups`].
pub const HELD_CONNECTIONS: u32 = 1;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// sqlx refuses the URL before trying to connect: the operator's to fix.
    #[error("not a PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The server refused the connection, or is not there: the message says why in words an
    /// operator acts on (connection refused, an unknown database, a rejected password), since
    /// sqlx's own wording for some of them ("pool timed out") hides the cause.
    #[error("cannot connect to PostgreSQL: {}", connect_cause(.0))]
    Connect(sqlx::Error),
    #[error("cannot connect to PostgreSQL: no answer within {} s", .0.as_secs())]
    ConnectTimeout(Duration),
    #[error("cannot apply the PostgreSQL migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("cannot listen for queue notifications")]
    Listen(#[source] sqlx::Error),
}

impl PgStore {
    /// Connects and brings the schema up to date, so that a new version migrates at start.
    /// Instances starting together are safe: sqlx serializes migrations with an advisory lock.
    /// The pool never opens more than `max_connections`, the `LISTEN` of queue wake-ups
    /// ([`HELD_CONNECTIONS`]) and the connections kept between queries included.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self, PgStoreError> {
        let options = first_connection(database_url).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // sqlx pings a connection when it is returned; a second ping when it is taken was
            // a round trip more on every query (a connection that died idle in between fails
            // one query, which the caller sees as the database unavailable).
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(PgStoreError::Connect)?;
        MIGRATOR.run(&pool).await.map_err(PgStoreError::Migrate)?;
        let hot = connections::Connections::new(pool.clone(), HELD_CONNECTIONS);
        Ok(Self {
            queue_notifier: Arc::new(queue_notifier::QueueNotifier::start(
                pool.clone(),
                QUEUE_CHANNEL,
                Duration::ZERO,
            )),
            events_notifier: Arc::new(queue_notifier::QueueNotifier::start(
                pool.clone(),
                EVENTS_CHANNEL,
                EVENTS_NOTIFY_GAP,
            )),
            events_written: Arc::new(tokio::sync::Notify::new()),
            endpoints: Arc::new(AtomicBool::new(true)),
            endpoints_asked: Arc::default(),
            instance: uuid::Uuid::new_v4().to_string().into(),
            batched: Arc::new(writes::Batched::start(&hot)),
            queue_floor: Arc::default(),
            hot,
            pool,
        })
    }

    /// Names the migrations (`0006 name`) the database still lacks, without applying them.
    pub async fn pending_migrations(database_url: &str) -> Result<Vec<String>, PgStoreError> {
        let pool = single_connection(database_url).await?;
        let pending = pending_in(&pool).await;
        pool.close().await;
        pending
    }

    /// Brings the schema up to date and names the migrations this call applied, none when it
    /// was up to date, for the operator's `migrate` command.
    pub async fn migrate(database_url: &str) -> Result<Vec<String>, PgStoreError> {
        let pool = single_connection(database_url).await?;
        let pending = pending_in(&pool).await?;
        MIGRATOR.run(&pool).await.map_err(PgStoreError::Migrate)?;
        pool.close().await;
        Ok(pending)
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

    /// Wakes this instance whenever another instance queues messages or records events
    /// ([`ports::QueueWakeups`]).
    pub fn queue_wakeups(&self) -> PgQueueWakeups {
        PgQueueWakeups::new(self.clone(), self.instance.clone())
    }

    /// Notified (one permit kept) after each commit of this store that may have recorded client
    /// webhook events: what this instance's deliverer waits on between its polls.
    pub fn events_written(&self) -> Arc<tokio::sync::Notify> {
        self.events_written.clone()
    }

    /// After a commit that may have recorded events: wakes this instance's deliverer at once
    /// and, shortly, the other instances' ones, unless no enabled endpoint was found since.
    pub(crate) fn events_may_be_recorded(&self) {
        if self.endpoints.load(Ordering::Relaxed) {
            self.events_recorded();
        }
    }

    /// After a commit that recorded events or deliveries: wakes every deliverer.
    pub(crate) fn events_recorded(&self) {
        self.endpoints.store(true, Ordering::Relaxed);
        self.events_written.notify_one();
        self.events_notifier.poke(self.instance.to_string());
    }

    /// What the deliverer's look learned: whether an enabled endpoint exists; an endpoint
    /// created or enabled here says so too.
    pub(crate) fn endpoints_found(&self, found: bool) {
        self.endpoints.store(found, Ordering::Relaxed);
    }

    /// Whether an empty look should ask again if an enabled endpoint exists: always while none
    /// was found (the poll alone looks then), else once a second, not on every wake-up.
    pub(crate) fn ask_for_endpoints(&self) -> bool {
        let mut asked = self
            .endpoints_asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = !self.endpoints.load(Ordering::Relaxed)
            || asked.is_none_or(|at| at.elapsed() >= ENDPOINTS_RECHECK);
        if due {
            *asked = Some(std::time::Instant::now());
        }
        due
    }

    /// A listener already subscribed to [`QUEUE_CHANNEL`] and [`EVENTS_CHANNEL`]: each
    /// notification means new work may be due. It reconnects by itself; notifications sent while it was disconnected are
    /// lost, so a dispatcher still looks at [`ports::MessageStore::next_due_at`] after waking.
    pub async fn queue_listener(&self) -> Result<PgListener, PgStoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(PgStoreError::Listen)?;
        listener
            .listen_all([QUEUE_CHANNEL, EVENTS_CHANNEL])
            .await
            .map_err(PgStoreError::Listen)?;
        Ok(listener)
    }
}

async fn single_connection(database_url: &str) -> Result<PgPool, PgStoreError> {
    let options = first_connection(database_url).await?;
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(PgStoreError::Connect)
}

/// One direct connection, closed again, before any pool: a pool's first connect retries until
/// its acquire timeout and then reports only that it timed out, where this one attempt says
/// why it failed, within [`CONNECT_TIMEOUT`]. Answers the parsed options for the pool.
async fn first_connection(database_url: &str) -> Result<PgConnectOptions, PgStoreError> {
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|error| match error {
            sqlx::Error::Configuration(problem) => PgStoreError::InvalidUrl(problem.to_string()),
            error => PgStoreError::InvalidUrl(error.to_string()),
        })?
        // JIT compiles each partition's expressions anew for every statement the planner
        // costs high (a report over months, a fold): that compiling took longer than the
        // statements it was for (docs/performance.md, "JIT, and the fold's settings"). Nothing
        // here runs long enough to earn it back.
        .options([("jit", "off")]);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => Err(PgStoreError::ConnectTimeout(CONNECT_TIMEOUT)),
        Ok(Err(error)) => Err(PgStoreError::Connect(error)),
        Ok(Ok(connection)) => {
            // Closing politely only spares the server a log line; the check is done.
            let _ = connection.close().await;
            Ok(options)
        }
    }
}

/// Why a connection failed, as the server or the operating system said it, without sqlx's
/// framing ("error communicating with database", "error returned from database").
fn connect_cause(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        sqlx::Error::Io(io) => io.to_string(),
        // `database "x" does not exist`, `password authentication failed for user "u"`, ...
        sqlx::Error::Database(database) => database.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        sqlx::Error::PoolTimedOut => "no connection became free in time".to_owned(),
        error => error.to_string(),
    }
}

async fn pending_in(pool: &PgPool) -> Result<Vec<String>, PgStoreError> {
    let mut connection = pool.acquire().await.map_err(PgStoreError::Connect)?;
    connection
        .ensure_migrations_table()
        .await
        .map_err(PgStoreError::Migrate)?;
    let applied = connection
        .list_applied_migrations()
        .await
        .map_err(PgStoreError::Migrate)?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| {
            migration.migration_type.is_up_migration()
                && !applied.iter().any(|done| done.version == migration.version)
        })
        .map(|migration| format!("{:04} {}", migration.version, migration.description))
        .collect())
}
