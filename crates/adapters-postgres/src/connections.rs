//! The hot paths' connections: taken from sqlx's pool once, then kept between the queries that
//! completed on them.
//!
//! sqlx sends every connection it takes back a ping (a round trip, both sides woken), because
//! a query cancelled half way can leave one mid-protocol. A connection whose query ran to its
//! end is known to be idle, so it is parked here and handed straight to the next caller; one
//! dropped before [`Connection::park`] (an error, a cancelled caller) goes back to sqlx, which
//! pings it as before. Parked connections stay counted in sqlx's pool, and a semaphore keeps
//! these paths to three quarters of it, leaving at least one connection for every other query
//! (reports, health, notifications); a pool of one parks nothing.

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
}

impl Connections {
    pub(crate) fn new(pool: PgPool) -> Self {
        let max = pool.options().get_max_connections();
        let kept = max.saturating_sub((max / 4).max(1));
        Self {
            pool,
            permits: Arc::new(Semaphore::new(kept.max(1) as usize)),
            parked: (kept > 0).then(Arc::default),
        }
    }

    /// A parked connection, or a new one from the pool when none is parked.
    pub(crate) async fn acquire(&self) -> Result<Connection, StoreError> {
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
        Connections::new(pool)
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
