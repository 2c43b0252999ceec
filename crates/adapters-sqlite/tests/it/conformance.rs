//! The store conformance kit, each behaviour on a database of its own.

use adapters_sqlite::SqliteStore;

/// On a file, as the service runs it: writers on different connections contend for real.
mod file {
    use super::*;

    async fn fresh_store() -> (SqliteStore, tempfile::TempDir) {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("sms-notify.db"))
            .await
            .unwrap();
        (store, directory)
    }

    ports::store_conformance_tests!(fresh_store);
}

/// In memory, as other crates' tests use it.
mod memory {
    use super::*;

    async fn fresh_store() -> (SqliteStore, ()) {
        (SqliteStore::in_memory().await.unwrap(), ())
    }

    ports::store_conformance_tests!(fresh_store);
}
