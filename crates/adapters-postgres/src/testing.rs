//! A fresh database per test (feature `test-support`), so that database tests run in parallel
//! against one real PostgreSQL server without seeing each other's rows.
//!
//! Test support panics instead of returning errors: a test cannot go on without its database.

use std::borrow::Cow;

use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use url::Url;
use uuid::Uuid;

use crate::PgStore;

const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections each test's store may open: enough for the concurrency tests to race for real,
/// few enough that tests running in parallel stay under the server's limit.
const TEST_POOL_SIZE: u32 = 8;

/// A database of its own, dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    /// Where the database is, for code that connects by itself (the service under test).
    pub url: String,
    name: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates an empty database on the server named by `DATABASE_URL` (by default a local
    /// server with trust authentication). Migrations run when a store connects.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses to create the database.
    pub async fn create() -> Self {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let mut server = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "cannot reach PostgreSQL at {}: start a local server or set DATABASE_URL",
                    without_password(&server_url)
                )
            });
        let name = format!("sms_notify_test_{}", Uuid::new_v4().simple());
        server
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot create the test database {name}: {error}"));
        // Leaving the connection to its drop would let the server see an abrupt disconnect.
        let _ = server.close().await;
        let mut url = Url::parse(&server_url)
            .unwrap_or_else(|error| panic!("DATABASE_URL is not a URL: {error}"));
        url.set_path(&name);
        Self {
            url: url.into(),
            name,
            server_url,
        }
    }

    /// A store on this database, migrated.
    ///
    /// # Panics
    /// When connecting or migrating fails.
    pub async fn store(&self) -> PgStore {
        PgStore::connect(&self.url, TEST_POOL_SIZE)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot open the test database {}: {error:?}", self.name)
            })
    }
}

impl TestDatabase {
    /// Applies only the migrations numbered below `version`, so that a test stores rows as the
    /// service did before `version`; a store connecting afterwards applies the rest.
    ///
    /// # Panics
    /// When connecting or migrating fails.
    pub async fn migrate_before(&self, version: i64) {
        let earlier = Migrator {
            migrations: Cow::Owned(
                crate::MIGRATOR
                    .iter()
                    .filter(|migration| migration.version < version)
                    .cloned()
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        let pool = PgPool::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot open the test database {}: {error}", self.name));
        earlier
            .run(&pool)
            .await
            .unwrap_or_else(|error| panic!("cannot migrate below {version}: {error}"));
        pool.close().await;
    }
}

impl Drop for TestDatabase {
    /// Drops the database from a thread of its own: `Drop` cannot await, and the test's runtime
    /// may be single-threaded or already shutting down.
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut server) = PgConnection::connect(&server_url).await {
                    // FORCE ends the connections the test's pool still holds.
                    let _ = server
                        .execute(
                            format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str(),
                        )
                        .await;
                    let _ = server.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// The URL as it may be shown: without its password.
fn without_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(None);
            }
            parsed.into()
        }
        Err(_) => "the configured URL".to_owned(),
    }
}
