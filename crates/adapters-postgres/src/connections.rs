//! The hot paths' connections: taken from sqlx's pool once, then kept between the queries that
//! completed on them.
//!
//! sqlx sends every connection it takes back a ping (a round trip, both sides woken), because
//! a query cancelled half way can leave one mid-protocol. A connection whose query ran to its
//! end is known to be idle, so it is parked here and handed straight to the next caller; one
//! dropped before [`Connection::park`] (an error, a cancelled caller) goes back to sqlx, which
//! pings it as before. Parked connections stay counted in sqlx's pool, and a semaphore keeps
//! these paths to three quarters of it, leaving at least one connection for every other query
//! (reports, health, notifications); a pool of one parks nothing. Connections held elsewhere
//! for good (the `LISTEN` of queue wake-ups) are left out of that share.
//!
//! Taking a connection, the wait for a place among the hot paths included, never outlasts the
//! pool's acquire timeout. Once that failed, the database is taken for unreachable: one
//! caller at a time tries again (and waits up to the timeout), the others hear at once that it
//! is unavailable, so that while it is down a request, or a batch of writes queued behind
//! another, does not wait a timeout per caller before it; the first success ends that.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Postgres;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use ports::StoreError;

use crate::rows::store_error;

/// `None` where the pool is too small to keep any (one connection).
type Parked = Option<Arc<Mutex<Vec<PoolConnection<Postgres>>>>>;

/// Cheap to clone: clones share the parked connections.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    pool: PgPool,
    permits: Arc<Semaphore>,
    parked: Parked,
    reach: Arc<Reach>,
}

/// Whether the last attempt to take a connection failed, and whether one is trying again.
#[derive(Debug, Default)]
struct Reach {
    state: Mutex<ReachState>,
}

#[derive(Debug, Default)]
struct ReachState {
    unreachable: bool,
    probing: bool,
}

/// The caller trying again while the database is taken for unreachable; dropped unfinished
/// (a cancelled caller), it lets the next one try.
struct Probe<'a> {
    reach: &'a Reach,
}

impl Reach {
    fn state(&self) -> std::sync::MutexGuard<'_, ReachState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok(None)`: reachable, go ahead; `Ok(Some(probe))`: unreachable, this caller tries;
    /// `Err`: unreachable and another caller is trying.
    fn enter(&self) -> Result<Option<Probe<'_>>, StoreError> {
        let mut state = self.state();
        match (state.unreachable, state.probing) {
            (false, _) => Ok(None),
            (true, false) => {
                state.probing = true;
                Ok(Some(Probe { reach: self }))
            }
            (true, true) => Err(StoreError::Unavailable(
                "the database did not give a connection in time; another caller is trying again"
                    .into(),
            )),
        }
    }

    fn record(&self, reachable: bool) {
        self.state().unreachable = !reachable;
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.reach.state().probing = false;
    }
}

impl Connections {
    /// `held` connections of `pool` are taken for good by others (a listener) and left out.
    pub(crate) fn new(pool: PgPool, held: u32) -> Self {
        let max = pool.options().get_max_connections().saturating_sub(held);
        let kept = max.saturating_sub((max / 4).max(1));
        Self {
            pool,
            permits: Arc::new(Semaphore::new(kept.max(1) as usize)),
            parked: (kept > 0).then(Arc::default),
            reach: Arc::default(),
        }
    }

    /// A parked connection, or a new one from the pool when none is parked; within the pool's
    /// acquire timeout, or the database is unavailable.
    pub(crate) async fn acquire(&self) -> Result<Connection, StoreError> {
        let probe = self.reach.enter()?;
        let timeout = self.pool.options().get_acquire_timeout();
        let acquired = tokio::time::timeout(timeout, self.acquire_unbounded())
            .await
            .map_err(|_| store_error(sqlx::Error::PoolTimedOut))
            .and_then(|acquired| acquired);
        self.reach.record(acquired.is_ok());
        drop(probe);
        acquired
    }

    async fn acquire_unbounded(&self) -> Result<Connection, StoreError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| store_error(sqlx::Error::PoolClosed))?;
        let parked = self
            .parked
            .as_ref()
            .and_then(|parked| parked.lock().unwrap_or_else(PoisonError::into_inner).pop());
        let connection = match parked {
            Some(connection) => connection,
            None => self.pool.acquire().await.map_err(store_error)?,
        };
        Ok(Connection {
            connection,
            parked: self.parked.clone(),
            _permit: permit,
        })
    }
}

/// One connection of [`Connections`]; dropped, it goes back to sqlx's pool.
pub(crate) struct Connection {
    /// Declared before the permit: the connection is released before another caller may ask.
    connection: PoolConnection<Postgres>,
    parked: Parked,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// Keeps the connection for the next caller: call it only once the last query on it has
    /// completed (a transaction committed or rolled back), never after an error.
    pub(crate) fn park(self) {
        let Self {
            connection,
            parked,
            _permit,
        } = self;
        if let Some(parked) = parked {
            parked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}

impl Deref for Connection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::postgres::PgPoolOptions;

    use super::*;
    use crate::testing::TestDatabase;

    async fn connections(database: &TestDatabase, max: u32) -> Connections {
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_millis(200))
            .connect(&database.url)
            .await
            .unwrap();
        Connections::new(pool, 0)
    }

    async fn backend(connection: &mut Connection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **connection)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_parked_connection_serves_the_next_caller_and_one_dropped_goes_back_to_sqlx() {
        let database = TestDatabase::create().await;
        let connections = connections(&database, 4).await;
        let mut first = connections.acquire().await.unwrap();
        let parked_backend = backend(&mut first).await;
        first.park();
        let mut second = connections.acquire().await.unwrap();
        assert_eq!(backend(&mut second).await, parked_backend);

        drop(second);
        assert!(
            connections.parked.as_ref().unwrap().lock().unwrap().is_empty(),
            "a connection dropped unparked (an error, a cancelled caller) must go back to sqlx, which pings it"
        );
    }

    /// A pool of two: one for the hot paths, one always left for every other query.
    #[tokio::test]
    async fn the_hot_paths_keep_a_share_of_the_pool_and_leave_the_rest() {
        let database = TestDatabase::create().await;
        let connections = connections(&database, 2).await;
        let first = connections.acquire().await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), connections.acquire())
                .await
                .is_err(),
            "a second caller got a connection beyond the hot paths' share"
        );
        first.park();
        assert!(
            connections.pool.acquire().await.is_ok(),
            "a parked connection starved the rest of the pool"
        );
        assert!(connections.acquire().await.is_ok());
    }

    /// While every place is taken (as when each holder waits on a database that is down), the
    /// next caller hears within the acquire timeout rather than queueing behind them.
    #[tokio::test]
    async fn a_caller_waiting_for_a_place_gives_up_within_the_acquire_timeout() {
        let database = TestDatabase::create().await;
        let connections = connections(&database, 2).await;
        let _first = connections.acquire().await.unwrap();
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(5), connections.acquire()).await;
        assert!(
            matches!(waited, Ok(Err(StoreError::Unavailable(_)))),
            "the caller still waits, or got a connection beyond the share"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// The listener's connection is the pool's, held for good: the hot paths' share is
    /// counted without it, so the rest of the pool keeps a connection.
    #[tokio::test]
    async fn connections_held_elsewhere_are_left_out_of_the_hot_paths_share() {
        let database = TestDatabase::create().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_millis(200))
            .connect(&database.url)
            .await
            .unwrap();
        let _listener = pool.acquire().await.unwrap();
        let connections = Connections::new(pool.clone(), 1);
        let _hot = [
            connections.acquire().await.unwrap(),
            connections.acquire().await.unwrap(),
        ];
        assert!(
            connections.acquire().await.is_err(),
            "the hot paths took more than their share"
        );
        assert!(
            pool.acquire().await.is_ok(),
            "nothing was left for the other queries"
        );
    }

    /// A database that stops answering: the caller that found out waited the timeout; the
    /// next ones hear at once while one of them tries again, and the first success ends it.
    #[tokio::test]
    async fn after_a_timed_out_acquire_one_caller_tries_again_and_the_others_hear_at_once() {
        let database = TestDatabase::create().await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&database.url)
            .await
            .unwrap();
        let connections = Connections::new(pool, 0);
        let held = connections.acquire().await.unwrap();
        assert!(connections.acquire().await.is_err(), "no place was free");

        let trying = tokio::spawn({
            let connections = connections.clone();
            async move { connections.acquire().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert!(connections.acquire().await.is_err());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the others waited: {:?}",
            started.elapsed()
        );
        held.park();
        trying.await.unwrap().unwrap();
        assert!(connections.acquire().await.is_ok(), "reachable again");
    }

    #[tokio::test]
    async fn a_pool_of_one_parks_nothing() {
        let database = TestDatabase::create().await;
        let connections = connections(&database, 1).await;
        connections.acquire().await.unwrap().park();
        assert!(
            connections.pool.acquire().await.is_ok(),
            "the only connection stayed parked"
        );
    }
}
