//! What only the PostgreSQL store does.

use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgStore, PgStoreError, QUEUE_CHANNEL};
use domain::webhook::EventType;
use domain::{MessageId, NewMessage, VerificationStatus};
use ports::testkit::{code_hash, code_message, endpoint, notification, t0, verification};
use ports::{
    MessageReports, MessageStore, QueueWakeups, StoreError, UsageGrouping, UsageQuery,
    VerificationStore, Wakeup, WebhookStore,
};

const PATIENCE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn enqueue_notifies_the_queue_channel() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let mut listener = store.queue_listener().await.unwrap();

    let queued = store.enqueue(notification(t0())).await.unwrap();

    let woken = tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("no notification after an enqueue")
        .unwrap();
    assert_eq!(woken.channel(), QUEUE_CHANNEL);
    assert_eq!(woken.payload(), queued.message().id.to_string());
}

#[tokio::test]
async fn queue_wakeups_wake_an_instance_for_messages_another_one_queues() {
    let database = TestDatabase::create().await;
    let listening = database.store().await;
    let queuing = database.store().await;
    let mut wakeups = listening.queue_wakeups();
    let woken = tokio::spawn(async move { wakeups.next().await });
    // It listens from its first call on: messages queued before then wake nobody.
    let give_up_at = tokio::time::Instant::now() + PATIENCE;
    while !woken.is_finished() {
        assert!(
            tokio::time::Instant::now() < give_up_at,
            "no wake-up for messages another instance queued"
        );
        queuing.enqueue(notification(t0())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(woken.await.unwrap().unwrap(), Wakeup::Queued);
}

#[tokio::test]
async fn a_concluded_verification_wakes_its_own_deliverer_directly_and_other_instances_through_postgres(
) {
    let database = TestDatabase::create().await;
    let listening = database.store().await;
    let concluding = database.store().await;
    let own = concluding.events_written();
    let mut wakeups = listening.queue_wakeups();
    let mut own_wakeups = concluding.queue_wakeups();
    let heard = tokio::spawn(async move {
        // Creating a verification queues its code: that word comes too.
        while wakeups.next().await.unwrap() != Wakeup::Events {}
    });
    let heard_its_own =
        tokio::spawn(async move { while own_wakeups.next().await.unwrap() != Wakeup::Events {} });
    // They listen from their first call on: changes before then wake nobody elsewhere.
    let give_up_at = tokio::time::Instant::now() + PATIENCE;
    while !heard.is_finished() {
        assert!(
            tokio::time::Instant::now() < give_up_at,
            "no wake-up for a verification another instance concluded"
        );
        let started = verification(t0());
        concluding
            .create(&started, code_hash(1), code_message(&started, t0()), None)
            .await
            .unwrap();
        let concluded = concluding
            .conclude(started.id, VerificationStatus::Approved, t0())
            .await
            .unwrap();
        assert!(concluded);
        tokio::time::timeout(PATIENCE, own.notified())
            .await
            .expect("the store did not wake its own deliverer after a conclusion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    heard.await.unwrap();
    // Its own word does not wake an instance a second time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !heard_its_own.is_finished(),
        "an instance heard its own word"
    );
    heard_its_own.abort();
}

/// Every message's status change would wake the deliverer for a look; once a look found no
/// enabled endpoint, none does until one is created (no event could be delivered meanwhile).
#[tokio::test]
async fn without_an_enabled_endpoint_a_conclusion_wakes_no_deliverer_until_one_is_created() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let own = store.events_written();
    let conclude = || async {
        let started = verification(t0());
        store
            .create(&started, code_hash(1), code_message(&started, t0()), None)
            .await
            .unwrap();
        let concluded = store
            .conclude(started.id, VerificationStatus::Approved, t0())
            .await
            .unwrap();
        assert!(concluded);
    };
    let nothing_due = store
        .claim_deliveries(t0(), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(nothing_due.is_empty());
    conclude().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), own.notified())
            .await
            .is_err(),
        "a conclusion woke the deliverer with no endpoint to deliver to"
    );
    let endpoint = endpoint("auth", &[EventType::VerificationApproved], 0);
    store.create_endpoint(&endpoint).await.unwrap();
    conclude().await;
    tokio::time::timeout(PATIENCE, own.notified())
        .await
        .expect("no wake-up for a conclusion once an endpoint was created");
}

#[tokio::test]
async fn creating_and_resending_a_verification_notify_the_queue_channel() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let mut listener = store.queue_listener().await.unwrap();

    let started = verification(t0());
    store
        .create(&started, code_hash(1), code_message(&started, t0()), None)
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("no notification after creating a verification")
        .unwrap();

    let now = t0() + chrono::TimeDelta::seconds(30);
    store
        .add_code(
            started.id,
            code_hash(2),
            code_message(&started, now),
            now,
            t0(),
            None,
        )
        .await
        .unwrap()
        .expect("the resend is allowed");
    tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("no notification after adding a code")
        .unwrap();
}

#[tokio::test]
async fn a_repeated_enqueue_does_not_notify() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let keyed = NewMessage {
        idempotency_key: Some("once".into()),
        ..notification(t0())
    };
    let mut listener = store.queue_listener().await.unwrap();
    store.enqueue(keyed.clone()).await.unwrap();
    // The first enqueue's notification is sent after its commit, on its own.
    let original = tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("no notification after an enqueue")
        .unwrap();
    assert_eq!(original.payload(), keyed.id.to_string());

    let repeated = NewMessage {
        id: MessageId::generate(),
        ..keyed
    };
    store.enqueue(repeated).await.unwrap();
    let fresh = notification(t0());
    store.enqueue(fresh.clone()).await.unwrap();

    let first = tokio::time::timeout(PATIENCE, listener.recv())
        .await
        .expect("no notification after an enqueue")
        .unwrap();
    assert_eq!(first.payload(), fresh.id.to_string());
}

#[tokio::test]
async fn connecting_twice_runs_the_migrations_once() {
    let database = TestDatabase::create().await;
    let first = database.store().await;
    first.enqueue(notification(t0())).await.unwrap();
    let second = PgStore::connect(&database.url, 2).await.unwrap();
    second.ping().await.unwrap();
    assert_eq!(
        second
            .claim_due(t0(), 10, Duration::from_secs(30))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_store_s_connections_never_jit_compile_a_statement() {
    // A report over months paid more to compile its partitions' expressions than to run.
    let database = TestDatabase::create().await;
    let store = database.store().await;

    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(store.pool())
        .await
        .unwrap();

    assert_eq!(jit, "off");
}

#[tokio::test]
async fn a_malformed_url_is_refused_as_a_url_before_any_connection() {
    let refused = PgStore::connect("postgres://postgres@127.0.0.1:not-a-port/postgres", 1).await;
    assert!(
        matches!(refused, Err(PgStoreError::InvalidUrl(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused_at_once_saying_so() {
    let started = std::time::Instant::now();
    let refused = PgStore::connect("postgres://u:secret@127.0.0.1:1/x", 1).await;
    let error = refused.expect_err("nothing listens on port 1");
    assert_eq!(
        error.to_string(),
        "cannot connect to PostgreSQL: connection refused"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unknown_database_is_named_in_the_error() {
    let database = TestDatabase::create().await;
    let url = format!("{}_missing", database.url);
    let error = PgStore::pending_migrations(&url).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("cannot connect to PostgreSQL: "), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let name = url.rsplit('/').next().unwrap();
    assert!(text.contains(name), "{text}");
}

/// Delivery statuses arrive through status callbacks, which no port writes yet; the row is
/// moved by hand to check how the report counts it.
#[tokio::test]
async fn usage_counts_delivered_messages() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
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
    let database = TestDatabase::create().await;

    let pending = PgStore::pending_migrations(&database.url).await.unwrap();
    let first = PgStore::migrate(&database.url).await.unwrap();
    assert_eq!(first, pending);
    assert_eq!(first.first().map(String::as_str), Some("0001 initial"));
    assert!(first.len() >= 3, "{first:?}");

    assert_eq!(
        PgStore::migrate(&database.url).await.unwrap(),
        Vec::<String>::new()
    );
}

/// Enqueues that arrive together are written together; one row PostgreSQL refuses (text
/// cannot hold a NUL) must fail only its own enqueue, as a refusal: the database is up, and a
/// batch that fails because it is down fails at once.
#[tokio::test]
async fn a_row_the_database_refuses_fails_alone_among_concurrent_enqueues() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let store = store.clone();
            let new = NewMessage {
                body: if n == 7 {
                    "bad\0body".into()
                } else {
                    format!("message {n}")
                },
                ..notification(t0())
            };
            tokio::spawn(async move { (n, new.id, store.enqueue(new).await) })
        })
        .collect();
    for task in tasks {
        let (n, id, answer) = task.await.unwrap();
        if n == 7 {
            assert!(matches!(answer, Err(StoreError::Refused(_))), "{answer:?}");
            assert_eq!(MessageStore::get(&store, id).await.unwrap(), None);
        } else {
            assert_eq!(answer.unwrap().message().id, id);
            assert!(
                MessageStore::get(&store, id).await.unwrap().is_some(),
                "message {n}"
            );
        }
    }
}

/// Prices stored before migration 0015 held Twilio's sign; after it, every stored price is the
/// amount spent, on the message and in its delivery history alike.
#[tokio::test]
async fn migration_0015_turns_twilios_stored_charges_into_amounts_spent() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let twilio = store.enqueue(notification(t0())).await.unwrap();
    let vonage = store.enqueue(notification(t0())).await.unwrap();
    let (twilio, vonage) = (twilio.message().id, vonage.message().id);
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    for (id, amount, currency) in [(twilio, "-0.00790", "USD"), (vonage, "0.03330000", "EUR")] {
        sqlx::query("UPDATE messages SET price_amount = $2, price_currency = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(amount)
            .bind(currency)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO message_events (message_id, status, price_amount, price_currency, \
         received_at) VALUES ($1, 'delivered', '-0.00750', 'USD', now())",
    )
    .bind(twilio.as_uuid())
    .execute(&pool)
    .await
    .unwrap();

    sqlx::raw_sql(include_str!(
        "../../../../migrations/postgres/0015_prices_are_amounts_spent.sql"
    ))
    .execute(&pool)
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
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(events, ["0.00750"]);
}

/// `two-factor-auth` messages stored before migration 0013 were not marked sensitive: 0016 marks
/// them and empties the bodies of those that left the queue, leaving queued ones and other
/// templates' messages as they were.
#[tokio::test]
async fn migration_0016_empties_the_codes_sent_through_messages_before_0013() {
    let database = TestDatabase::create().await;
    let store = database.store().await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
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
            .bind(id.as_uuid())
            .bind(status)
            .execute(&pool)
            .await
            .unwrap();
        ids.push(id);
    }

    sqlx::raw_sql(include_str!(
        "../../../../migrations/postgres/0016_sensitive_bodies_stored_before.sql"
    ))
    .execute(&pool)
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
