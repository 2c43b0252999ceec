//! What only the SQLite store does.

use adapters_sqlite::{SqliteStore, SqliteStoreError};
use ports::testkit::{notification, t0};
use ports::{MessageReports, MessageStore, UsageGrouping, UsageQuery};

#[tokio::test]
async fn open_creates_the_file_and_its_directories() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory
        .path()
        .join("data")
        .join("nested")
        .join("sms-notify.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.is_file());
}

#[tokio::test]
async fn messages_survive_reopening_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("sms-notify.db");
    let queued = notification(t0());
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.enqueue(queued.clone()).await.unwrap();
        store.close().await;
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    let stored = MessageStore::get(&reopened, queued.id).await.unwrap();
    assert_eq!(stored.map(|message| message.body), Some(queued.body));
}

#[tokio::test]
async fn a_path_under_a_file_is_a_create_directory_error() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let refused = SqliteStore::open(&file.join("sms-notify.db")).await;
    assert!(
        matches!(refused, Err(SqliteStoreError::CreateDirectory { .. })),
        "{refused:?}"
    );
}

/// Delivery statuses arrive through status callbacks, which no port writes yet; the row is
/// moved by hand to check how the report counts it.
#[tokio::test]
async fn usage_counts_delivered_messages() {
    let store = SqliteStore::in_memory().await.unwrap();
    for offset in 0..3 {
        store
            .enqueue(notification(t0() + chrono::TimeDelta::seconds(offset)))
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE messages SET status = 'delivered' WHERE id IN \
         (SELECT id FROM messages ORDER BY created_at LIMIT 2)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let usage = store
        .usage(&UsageQuery {
            since: t0(),
            until: t0() + chrono::TimeDelta::days(1),
            group_by: UsageGrouping::Status,
            api_key: None,
        })
        .await
        .unwrap();
    let delivered: Vec<(Option<&str>, u64)> = usage
        .iter()
        .map(|group| (group.key.as_deref(), group.delivered))
        .collect();
    assert_eq!(delivered, [(Some("delivered"), 2), (Some("queued"), 0)]);
}

#[tokio::test]
async fn migrate_runs_the_pending_migrations_and_names_them_then_none() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("sms-notify.db");

    let pending = SqliteStore::pending_migrations(&path).await.unwrap();
    let first = SqliteStore::migrate(&path).await.unwrap();
    assert_eq!(first, pending);
    assert_eq!(first.first().map(String::as_str), Some("0001 initial"));
    assert!(first.len() >= 3, "{first:?}");

    assert_eq!(
        SqliteStore::migrate(&path).await.unwrap(),
        Vec::<String>::new()
    );
    SqliteStore::open(&path)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
}
