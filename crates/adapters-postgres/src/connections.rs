//! The hot paths' connections: taken from sqlx's pool once, then kept between the queries that
//! completed on them.
//!
//! sqlx sends every connection it takes back a ping (a round trip, both sides woken), because
//! a query cancelled half way can leave one mid-protocol. A connection whose query ran to its
//! end is known to be idle, so it is parked here and handed straight to the next caller; one
//! dropped before [`Connection::park`] (an error, a cancelled caller) goes back to sqlx, which
//! pings it as before. Parked connections stay counted in sqlx's pool, and a semaphore keeps
//! these paths to `size` of them, so the pool always has the rest for every other query.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Postgres;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Cheap to clone: clones share the parked connections.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    pool: PgPool,
    permits: Arc<Semaphore>,
    parked: Arc<Mutex<Vec<PoolConnection<Postgres>>>>,
}

impl Connections {
    /// At most `size` connections of `pool` serve these paths at once.
    pub(crate) fn new(pool: PgPool, size: u32) -> Self {
        Self {
            pool,
            permits: Arc::new(Semaphore::new(size.max(1) as usize)),
            parked: Arc::default(),
        }
    }

    /// A parked connection, or a new one from the pool when none is parked.
    pub(crate) async fn acquire(&self) -> Result<Connection, sqlx::Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let parked = self
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match parked {
            Some(connection) => connection,
            None => self.pool.acquire().await?,
        };
        Ok(Connection {
            connection,
            parked: Arc::clone(&self.parked),
            _permit: permit,
        })
    }
}

/// One connection of [`Connections`]; dropped, it goes back to sqlx's pool.
pub(crate) struct Connection {
    /// Declared before the permit: the connection is released before another caller may ask.
    connection: PoolConnection<Postgres>,
    parked: Arc<Mutex<Vec<PoolConnection<Postgres>>>>,
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
        parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection);
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

    async fn connections(database: &TestDatabase, size: u32) -> Connections {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database.url)
            .await
            .unwrap();
        Connections::new(pool, size)
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
        let connections = connections(&database, 2).await;
        let mut first = connections.acquire().await.unwrap();
        let parked_backend = backend(&mut first).await;
        first.park();
        let mut second = connections.acquire().await.unwrap();
        assert_eq!(backend(&mut second).await, parked_backend);

        drop(second);
        assert!(
            connections.parked.lock().unwrap().is_empty(),
            "a connection dropped unparked (an error, a cancelled caller) must go back to sqlx, which pings it"
        );
    }

    #[tokio::test]
    async fn no_more_than_size_connections_serve_at_once() {
        let database = TestDatabase::create().await;
        let connections = connections(&database, 1).await;
        let first = connections.acquire().await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), connections.acquire())
                .await
                .is_err(),
            "a second caller got a connection beyond the size"
        );
        first.park();
        assert!(connections.acquire().await.is_ok());
    }
}
