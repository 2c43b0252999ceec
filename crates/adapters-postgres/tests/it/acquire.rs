//! `sms_notify_acquire()` called with whole bursts, as the batched `RateLimiter::acquire` calls
//! it: a burst that has room is admitted in bulk, any other is judged send by send; either way
//! each key's count stays the number of its kept events.

use adapters_postgres::testing::TestDatabase;
use chrono::{DateTime, TimeDelta, Utc};
use ports::testkit::t0;
use sqlx::PgPool;

/// One send's limit in a burst: the send's number, its key and limit, and when it is sent.
struct Row {
    send: i32,
    key: &'static str,
    max: i64,
    window_seconds: i64,
    at_seconds: i64,
}

fn row(send: i32, key: &'static str, max: i64, window_seconds: i64, at_seconds: i64) -> Row {
    Row {
        send,
        key,
        max,
        window_seconds,
        at_seconds,
    }
}

/// The refusals of one call: the send, the key, and when the key's window has room again.
async fn acquire(pool: &PgPool, burst: &[Row]) -> Vec<(i32, String, Option<DateTime<Utc>>)> {
    let at = |row: &Row| t0() + TimeDelta::seconds(row.at_seconds);
    let refused = sqlx::query_as(
        "SELECT refused_send, refused_key, room_at FROM sms_notify_acquire($1, $2, $3, $4, $5)",
    )
    .bind(burst.iter().map(|row| row.send).collect::<Vec<_>>())
    .bind(burst.iter().map(|row| row.key).collect::<Vec<_>>())
    .bind(burst.iter().map(|row| row.max).collect::<Vec<_>>())
    .bind(
        burst
            .iter()
            .map(|row| at(row) - TimeDelta::seconds(row.window_seconds))
            .collect::<Vec<_>>(),
    )
    .bind(burst.iter().map(at).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
    .unwrap();
    assert_counts_are_kept_events(pool).await;
    refused
}

async fn assert_counts_are_kept_events(pool: &PgPool) {
    let wrong: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.key, c.events, (SELECT count(*) FROM rate_limit_events AS e WHERE e.key = c.key) \
         FROM rate_limit_counts AS c",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, counted, kept): &(String, i64, i64)| counted != kept)
    .collect();
    assert!(
        wrong.is_empty(),
        "counts that are not their events: {wrong:?}"
    );
}

async fn migrated_pool(database: &TestDatabase) -> PgPool {
    database.store().await;
    PgPool::connect(&database.url).await.unwrap()
}

#[tokio::test]
async fn a_burst_that_fills_a_window_exactly_is_admitted_whole_and_the_next_send_told_when() {
    let database = TestDatabase::create().await;
    let pool = migrated_pool(&database).await;
    let burst: Vec<Row> = (1..=3)
        .flat_map(|send| {
            let number = ["number:a", "number:b", "number:c"][usize::try_from(send - 1).unwrap()];
            [
                row(send, number, 1, 60, 0),
                row(send, "api-key:x", 3, 60, 0),
            ]
        })
        .collect();
    assert_eq!(acquire(&pool, &burst).await, []);

    let refused = acquire(
        &pool,
        &[
            row(1, "number:d", 1, 60, 10),
            row(1, "api-key:x", 3, 60, 10),
        ],
    )
    .await;
    assert_eq!(refused, [(1, "api-key:x".to_owned(), Some(t0()))]);
}

#[tokio::test]
async fn sends_that_leave_the_window_during_a_burst_make_room_for_its_later_sends() {
    let database = TestDatabase::create().await;
    let pool = migrated_pool(&database).await;
    for at in [0, 10, 20] {
        assert_eq!(acquire(&pool, &[row(1, "number:a", 3, 60, at)]).await, []);
    }
    // At 60 s the send at 0 s has left the window, at 70 s the one at 10 s.
    let burst = [row(1, "number:a", 3, 60, 60), row(2, "number:a", 3, 60, 70)];
    assert_eq!(acquire(&pool, &burst).await, []);

    let refused = acquire(&pool, &[row(1, "number:a", 3, 60, 75)]).await;
    assert_eq!(
        refused,
        [(
            1,
            "number:a".to_owned(),
            Some(t0() + TimeDelta::seconds(20))
        )]
    );
}

#[tokio::test]
async fn a_send_refused_in_a_burst_counts_nothing_for_the_sends_after_it() {
    let database = TestDatabase::create().await;
    let pool = migrated_pool(&database).await;
    let burst = [
        row(1, "number:a", 1, 60, 0),
        row(1, "api-key:x", 2, 60, 0),
        row(2, "number:a", 1, 60, 0),
        row(2, "api-key:x", 2, 60, 0),
        row(3, "number:b", 1, 60, 0),
        row(3, "api-key:x", 2, 60, 0),
    ];
    assert_eq!(
        acquire(&pool, &burst).await,
        [(2, "number:a".to_owned(), Some(t0()))]
    );
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, events FROM rate_limit_counts ORDER BY key")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected = [("api-key:x", 2), ("number:a", 1), ("number:b", 1)];
    assert_eq!(
        counts,
        expected.map(|(key, events)| (key.to_owned(), events))
    );
}

#[tokio::test]
async fn bursts_on_a_new_database_read_the_limits_through_their_indexes() {
    // PL/pgSQL keeps the plans of a session's first calls, made here on one-page tables, where
    // a sequential scan is cheapest: kept while the tables grew, every burst read every count
    // whole (docs/performance.md, "Figure 2's two modes").
    let database = TestDatabase::create().await;
    let pool = migrated_pool(&database).await;
    let mut session = pool.begin().await.unwrap();
    for burst in 0..20_i64 {
        // Each burst to 50 new numbers under one API key, as a busy client's codes go: with a
        // few keys to a burst, the planner keeps to the index on tables this small anyway.
        let numbers: Vec<String> = (0..50).map(|n| format!("number:{burst}-{n}")).collect();
        let keys: Vec<&str> = numbers
            .iter()
            .flat_map(|number| [number.as_str(), "api-key:x"])
            .collect();
        let at = t0() + TimeDelta::seconds(burst);
        let refused: Vec<(i32, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT refused_send, refused_key, room_at \
             FROM sms_notify_acquire($1, $2, $3, $4, $5)",
        )
        .bind((1..=50).flat_map(|send| [send, send]).collect::<Vec<i32>>())
        .bind(&keys)
        .bind(vec![1_000_i64; keys.len()])
        .bind(vec![at - TimeDelta::seconds(60); keys.len()])
        .bind(vec![at; keys.len()])
        .fetch_all(&mut *session)
        .await
        .unwrap();
        assert_eq!(refused, []);
    }

    // This transaction's own scans of the two tables, counted as they happened.
    let scans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, seq_scan, idx_scan FROM pg_stat_xact_user_tables \
         WHERE relname IN ('rate_limit_counts', 'rate_limit_events') ORDER BY relname",
    )
    .fetch_all(&mut *session)
    .await
    .unwrap();
    let whole: Vec<&(String, i64, i64)> = scans.iter().filter(|(_, seq, _)| *seq > 0).collect();
    assert!(whole.is_empty(), "tables read whole: {whole:?}");
    assert!(
        scans
            .iter()
            .any(|(table, _, index)| table == "rate_limit_counts" && *index > 0),
        "the counts were never read through their index: {scans:?}"
    );
}
