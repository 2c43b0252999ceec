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

/// In memory under a name of its own, shared by the writer and the readers' connections: what
/// the end-to-end tests run the service on (`sqlite://file:NAME?mode=memory&cache=shared`).
mod named_memory {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    async fn fresh_store() -> (SqliteStore, ()) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "file:conformance-{}-{}?mode=memory&cache=shared",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        (SqliteStore::open(name.as_ref()).await.unwrap(), ())
    }

    ports::store_conformance_tests!(fresh_store);
}
