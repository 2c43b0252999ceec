//! What only the SQLite store does.

use adapters_sqlite::{SqliteStore, SqliteStoreError};
use domain::NewMessage;
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

/// Prices stored before migration 0015 held Twilio's sign; after it, every stored price is the
/// amount spent, on the message and in its delivery history alike.
#[tokio::test]
async fn migration_0015_turns_twilios_stored_charges_into_amounts_spent() {
    let store = SqliteStore::in_memory().await.unwrap();
    let twilio = store.enqueue(notification(t0())).await.unwrap();
    let vonage = store.enqueue(notification(t0())).await.unwrap();
    let (twilio, vonage) = (twilio.message().id, vonage.message().id);
    for (id, amount, currency) in [(twilio, "-0.00790", "USD"), (vonage, "0.03330000", "EUR")] {
        sqlx::query("UPDATE messages SET price_amount = $2, price_currency = $3 WHERE id = $1")
            .bind(id.as_uuid().hyphenated())
            .bind(amount)
            .bind(currency)
            .execute(store.pool())
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO message_events (message_id, status, price_amount, price_currency, \
         received_at) VALUES ($1, 'delivered', '-0.00750', 'USD', 0)",
    )
    .bind(twilio.as_uuid().hyphenated())
    .execute(store.pool())
    .await
    .unwrap();

    sqlx::raw_sql(include_str!(
        "../../../../migrations/sqlite/0015_prices_are_amounts_spent.sql"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    for (id, amount) in [(twilio, "0.00790"), (vonage, "0.03330000")] {
        let message = MessageStore::get(&store, id).await.unwrap().unwrap();
        assert_eq!(
            message.price.map(|price| price.amount).as_deref(),
            Some(amount)
        );
    }
    let events: Vec<String> = sqlx::query_scalar("SELECT price_amount FROM message_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(events, ["0.00750"]);
}

/// `two-factor-auth` messages stored before migration 0013 were not marked sensitive: 0016 marks
/// them and empties the bodies of those that left the queue, leaving queued ones and other
/// templates' messages as they were.
#[tokio::test]
async fn migration_0016_empties_the_codes_sent_through_messages_before_0013() {
    let store = SqliteStore::in_memory().await.unwrap();
    let mut ids = Vec::new();
    for (template, status) in [
        ("two-factor-auth", "delivered"),
        ("two-factor-auth", "queued"),
        ("order-shipped", "delivered"),
    ] {
        let message = NewMessage {
            template: Some(template.into()),
            body: "Your code is 402913".into(),
            ..notification(t0())
        };
        let id = store.enqueue(message).await.unwrap().message().id;
        sqlx::query("UPDATE messages SET status = $2 WHERE id = $1")
            .bind(id.as_uuid().hyphenated())
            .bind(status)
            .execute(store.pool())
            .await
            .unwrap();
        ids.push(id);
    }

    sqlx::raw_sql(include_str!(
        "../../../../migrations/sqlite/0016_sensitive_bodies_stored_before.sql"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    let mut seen = Vec::new();
    for id in ids {
        let message = MessageStore::get(&store, id).await.unwrap().unwrap();
        seen.push((message.sensitive, message.body));
    }
    assert_eq!(
        seen,
        [
            (true, String::new()),
            (true, "Your code is 402913".into()),
            (false, "Your code is 402913".into()),
        ]
    );
}

/// A database in memory under `name`, as `DATABASE_URL=sqlite://file:NAME?mode=memory&cache=shared`
/// names one: what the end-to-end tests run on.
fn named_in_memory(name: &str) -> std::path::PathBuf {
    format!("file:{name}?mode=memory&cache=shared").into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_database_in_memory_is_shared_by_its_connections_and_by_name_and_leaves_no_file() {
    let name = format!("sqlite-it-{}", std::process::id());
    let store = SqliteStore::open(&named_in_memory(&name)).await.unwrap();
    let queued = notification(t0());

    store.enqueue(queued.clone()).await.unwrap();

    // Written through the writer, read through the readers' pool.
    let stored = MessageStore::get(&store, queued.id).await.unwrap();
    assert_eq!(
        stored.map(|message| message.body),
        Some(queued.body.clone())
    );
    let same_name = SqliteStore::open(&named_in_memory(&name)).await.unwrap();
    assert!(MessageStore::get(&same_name, queued.id)
        .await
        .unwrap()
        .is_some());
    let other_name = SqliteStore::open(&named_in_memory(&format!("{name}-other")))
        .await
        .unwrap();
    assert_eq!(
        MessageStore::get(&other_name, queued.id).await.unwrap(),
        None
    );
    let on_disk: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|file| file.contains(&name))
        .collect();
    assert!(on_disk.is_empty(), "{on_disk:?}");
}
