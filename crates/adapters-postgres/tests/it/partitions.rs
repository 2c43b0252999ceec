//! Weekly partitions (migration 0037): the migration keeps every row of a database that was
//! in use, and the service keeps working with them; weeks are created ahead, a row without
//! a week is never refused, and retention drops whole weeks.

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use domain::{DeliveryEvent, MessageId, MessageStatus, NewMessage};
use ports::testkit::{notification, phone};
use ports::{
    DataLifecycle, DeliveryUpdate, Enqueued, MessageReports, MessageStore, Retained, UsageGrouping,
    UsageQuery,
};
use sqlx::PgPool;
use uuid::Uuid;

/// The migration this file is about: every earlier one runs before the rows are stored.
const PARTITIONS: i64 = 37;

/// A UUIDv7 minted at `at`, as the service mints ids.
fn id_at(at: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(at.timestamp()).unwrap(),
        at.timestamp_subsec_nanos(),
    ))
}

/// Queues a notification whose id was minted at `at`, as the service minted ids then.
async fn queued_minted_at(store: &PgStore, at: DateTime<Utc>) -> MessageId {
    let message = NewMessage {
        id: MessageId::from_uuid(id_at(at)),
        ..notification(at)
    };
    store.enqueue(message).await.unwrap().message().id
}

/// Rows of every kind the partitioned tables hold, and of those that hang off them.
const TABLES: [&str; 8] = [
    "messages",
    "message_attempts",
    "message_events",
    "verifications",
    "verification_codes",
    "fraud_decisions",
    "webhook_events",
    "usage_rollups",
];

async fn counts(pool: &PgPool) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in TABLES {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap();
        counts.push((table, count));
    }
    counts
}

/// The partition holding `id` in `table`.
async fn partition_of(pool: &PgPool, table: &str, id: Uuid) -> String {
    sqlx::query_scalar(&format!(
        "SELECT tableoid::regclass::text FROM {table} WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn tables_like(pool: &PgPool, pattern: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relkind IN ('r', 'p') AND relname LIKE $1 \
         ORDER BY relname",
    )
    .bind(pattern)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A sent message as the service stored it before 0037: with an idempotency key, the
/// provider's id, an attempt, a delivery event and a client webhook's event; and, for a code,
/// its verification with the code and a fraud decision about it.
async fn store_as_before(pool: &PgPool, at: DateTime<Utc>, to: &str, key: &str, sid: &str) -> Uuid {
    let verification = id_at(at);
    let message = id_at(at + TimeDelta::milliseconds(1));
    sqlx::query(
        r#"INSERT INTO verifications (id, "to", channel, api_key, status, check_count,
               max_checks, send_count, max_sends, expires_at, last_sent_at, created_at,
               updated_at)
           VALUES ($1, $2, 'sms', 'auth', 'approved', 1, 5, 1, 5, $3, $3, $3, $3)"#,
    )
    .bind(verification)
    .bind(to)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO verification_codes (verification_id, code_hash, created_at, message_id) \
         VALUES ($1, '\\x01', $2, $3)",
    )
    .bind(verification)
    .bind(at)
    .bind(message)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        r#"INSERT INTO fraud_decisions (id, at, "to", api_key, verification_id, action, reasons)
           VALUES ($1, $2, $3, 'auth', $4, 'monitor', '[]')"#,
    )
    .bind(Uuid::new_v4())
    .bind(at)
    .bind(to)
    .bind(verification)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        r#"INSERT INTO messages (id, "to", channel, template, body, segments, priority, status,
               api_key, idempotency_key, idempotency_fingerprint, provider, provider_sid,
               attempt_count, next_attempt_at, created_at, updated_at, country)
           VALUES ($1, $2, 'sms', 'order-shipped', 'Your order is on its way', 1, 0, 'sent',
               'shop', $3, NULL, 'twilio', $4, 1, $5, $5, $5, 'US')"#,
    )
    .bind(message)
    .bind(to)
    .bind(key)
    .bind(sid)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO message_attempts (message_id, number, started_at, finished_at, outcome, \
             http_status, provider) VALUES ($1, 1, $2, $2, 'sent', 201, 'twilio')",
    )
    .bind(message)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO message_events (message_id, status, received_at) VALUES ($1, 'sent', $2)",
    )
    .bind(message)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, status) \
         VALUES ($1, 'message.sent', $2, 'shop', 1, $3, 'sent')",
    )
    .bind(Uuid::new_v4())
    .bind(message)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    message
}

fn delivered(at: DateTime<Utc>) -> DeliveryEvent {
    DeliveryEvent {
        status: MessageStatus::Delivered,
        error_code: None,
        error_message: None,
        price: None,
        received_at: at,
    }
}

fn keyed(key: &str, at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        idempotency_key: Some(key.into()),
        ..notification(at)
    }
}

/// A database in use before 0037 (its rows four months old, past a 90-day retention) is
/// migrated: every row is kept in the first partition, a replayed idempotency key still answers
/// its message, a status callback still finds its message by the provider's id, an erasure
/// still removes a number; then retention drops the first partition whole, and a week created
/// since, keeping the report's counts and freeing the removed message's idempotency key.
#[tokio::test]
async fn migration_0037_keeps_every_row_and_the_service_works_with_them() {
    let database = TestDatabase::create().await;
    database.migrate_before(PARTITIONS).await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    let now = Utc::now();
    let old = now - TimeDelta::days(120);
    let kept = store_as_before(&pool, old, "+15551234567", "order-1", "SMkept").await;
    let erased = store_as_before(
        &pool,
        old + TimeDelta::hours(1),
        "+15557654321",
        "order-2",
        "SMerased",
    )
    .await;
    let before = counts(&pool).await;

    let store = database.store().await;

    assert_eq!(counts(&pool).await, before, "a row was lost or added");
    let first = partition_of(&pool, "messages", kept).await;
    assert!(first.ends_with("_and_before"), "{first}");
    let replayed = store.enqueue(keyed("order-1", now)).await.unwrap();
    assert!(
        matches!(&replayed, Enqueued::Existing(message) if message.id.as_uuid() == kept),
        "{replayed:?}"
    );
    let update = store
        .record_delivery("SMkept", delivered(old), None)
        .await
        .unwrap();
    assert!(
        matches!(update, DeliveryUpdate::Applied { .. }),
        "{update:?}"
    );
    let message = store
        .get(MessageId::from_uuid(kept))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.status, MessageStatus::Delivered);
    let removed = store.erase_number(&phone("+15557654321")).await.unwrap();
    assert_eq!(
        (removed.messages, removed.attempts, removed.verifications),
        (1, 1, 1)
    );
    assert!(store
        .get(MessageId::from_uuid(erased))
        .await
        .unwrap()
        .is_none());

    // A message of 100 days ago stored since goes into its week's partition; one of today
    // into this week's.
    let week_old = now - TimeDelta::days(100);
    let in_a_week = queued_minted_at(&store, week_old).await;
    sqlx::query("UPDATE messages SET status = 'failed' WHERE id = $1")
        .bind(in_a_week.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    let week = partition_of(&pool, "messages", in_a_week.as_uuid()).await;
    assert!(
        week.starts_with("messages_p") && !week.ends_with("_and_before"),
        "{week}"
    );
    let today = store.enqueue(notification(now)).await.unwrap().message().id;

    let query = UsageQuery {
        since: old - TimeDelta::hours(1),
        until: now + TimeDelta::hours(1),
        group_by: UsageGrouping::Status,
        api_key: None,
    };
    let report = store.usage(&query).await.unwrap();
    let cutoff = now - TimeDelta::days(90);
    let messages = store
        .remove_expired(Retained::Messages, cutoff, 1000)
        .await
        .unwrap();
    let verifications = store
        .remove_expired(Retained::Verifications, cutoff, 1000)
        .await
        .unwrap();

    assert_eq!(
        (
            messages.messages,
            messages.attempts,
            messages.delivery_events
        ),
        (2, 1, 2),
        "the first partition's message with its attempt and events, and the week's"
    );
    assert_eq!(
        (
            verifications.verifications,
            verifications.verification_codes,
            verifications.fraud_decisions
        ),
        (1, 1, 1)
    );
    assert_eq!(
        tables_like(&pool, "%\\_and\\_before").await,
        Vec::<String>::new()
    );
    assert!(
        !tables_like(&pool, "messages_p%").await.contains(&week),
        "the week of 100 days ago was not dropped"
    );
    assert!(store.get(today).await.unwrap().is_some());
    assert_eq!(
        store.usage(&query).await.unwrap(),
        report,
        "the report lost counts"
    );
    let webhook_events: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(webhook_events, 0, "an event of a dropped message is kept");
    let again = store.enqueue(keyed("order-1", now)).await.unwrap();
    assert!(matches!(again, Enqueued::Created(_)), "{again:?}");
}

/// A message whose id falls in no week yet (a clock far ahead) is stored all the same, and
/// moves into its week when the service creates it.
#[tokio::test]
async fn a_message_without_a_week_is_stored_and_moves_into_its_week_once_created() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    let ahead = Utc::now() + TimeDelta::days(60);
    let id = queued_minted_at(&store, ahead).await;
    assert_eq!(
        partition_of(&pool, "messages", id.as_uuid()).await,
        "messages_default"
    );

    sqlx::query("SELECT sms_notify_prepare_partitions(now() + interval '70 days')")
        .execute(&pool)
        .await
        .unwrap();

    let week = partition_of(&pool, "messages", id.as_uuid()).await;
    assert!(week.starts_with("messages_p"), "{week}");
    assert_eq!(store.get(id).await.unwrap().unwrap().id, id);
}

/// A message left in the queue weeks ago (a provider down for long) is claimed with today's,
/// and its due time counted: the claims skip only the weeks before the oldest one holding a
/// message in the queue.
#[tokio::test]
async fn a_message_queued_weeks_ago_is_claimed_with_today_s() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let now = Utc::now().trunc_subsecs(3);
    let weeks_ago = now - TimeDelta::days(21);
    let old = queued_minted_at(&store, weeks_ago).await;
    let new = store.enqueue(notification(now)).await.unwrap().message().id;

    assert_eq!(store.next_due_at().await.unwrap(), Some(weeks_ago));
    let claimed: Vec<MessageId> = store
        .claim_due(now, 10, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.message.id)
        .collect();
    assert_eq!(claimed, [old, new]);
}

/// The service creates the coming weeks of every partitioned table when they are missing,
/// and nothing when they are there.
#[tokio::test]
async fn the_service_creates_the_coming_weeks_ahead() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    assert_eq!(store.prepare_partitions().await.unwrap(), 0);
    let newest = tables_like(&pool, "messages_p%").await.pop().unwrap();
    let week = newest.trim_start_matches("messages");
    for table in [
        "messages",
        "message_attempts",
        "message_events",
        "verifications",
        "verification_codes",
    ] {
        sqlx::query(&format!("DROP TABLE {table}{week}"))
            .execute(&pool)
            .await
            .unwrap();
    }

    assert_eq!(store.prepare_partitions().await.unwrap(), 5);

    assert_eq!(tables_like(&pool, "messages_p%").await.pop(), Some(newest));
}

/// A run that stopped after detaching a week (a crash, a lost connection) leaves its tables
/// outside the parents: the next run folds the week's messages into the report and drops it,
/// whatever its cut-off.
#[tokio::test]
async fn a_week_left_detached_by_a_stopped_run_is_folded_and_dropped_by_the_next() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let pool = PgPool::connect(&database.url).await.unwrap();
    let old = Utc::now() - TimeDelta::days(100);
    let id = queued_minted_at(&store, old).await;
    sqlx::query("UPDATE messages SET status = 'failed' WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&pool)
        .await
        .unwrap();
    let query = UsageQuery {
        since: old - TimeDelta::hours(1),
        until: old + TimeDelta::hours(1),
        group_by: UsageGrouping::Status,
        api_key: None,
    };
    let report = store.usage(&query).await.unwrap();
    let week = partition_of(&pool, "messages", id.as_uuid()).await;
    let suffix = week.trim_start_matches("messages");
    for table in ["messages", "message_attempts", "message_events"] {
        sqlx::query(&format!(
            "ALTER TABLE {table} DETACH PARTITION {table}{suffix}"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }

    let removed = store
        .remove_expired(Retained::Messages, old - TimeDelta::days(365), 1000)
        .await
        .unwrap();

    assert_eq!(removed.messages, 1);
    assert!(tables_like(&pool, &format!("%{suffix}"))
        .await
        .iter()
        .all(|t| !t.starts_with("message")));
    assert_eq!(
        store.usage(&query).await.unwrap(),
        report,
        "the report lost the week"
    );
}
