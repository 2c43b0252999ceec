//! The store conformance kit, each behaviour on a database of its own.

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;

async fn fresh_store() -> (PgStore, TestDatabase) {
    let database = TestDatabase::create().await;
    (database.store().await, database)
}

ports::store_conformance_tests!(fresh_store);
