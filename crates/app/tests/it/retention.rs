//! The retention job on a real store (SQLite in memory) with a clock the test moves: what it
//! removes and empties as days pass, what the usage and conversion reports and the metrics say,
//! and that two runners (two instances) never work at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adapters_sqlite::SqliteStore;
use app::lifecycle::retention::{RetentionConfig, RetentionJob, RetentionRun};
use app::observability::metrics::Metrics;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Attempt, AttemptOutcome, Channel, CodeHash, MessageId, NewMessage, PhoneNumber, Price,
    Priority, Verification, VerificationPolicy, VerificationStatus,
};
use ports::{
    Clock, ConversionGrouping, ConversionQuery, DataLifecycle, DispatchOutcome, LeaseHolder,
    MessageReports, MessageStore, Removed, Retained, StoreError, UsageGrouping, UsageQuery,
};

use crate::ManualClock;

fn config() -> RetentionConfig {
    RetentionConfig {
        batch: 2,
        pause: Duration::ZERO,
        ..RetentionConfig::default()
    }
}

/// A plain message to `to`, created and sent at `at` for 0.0079 USD.
async fn sent(store: &SqliteStore, at: DateTime<Utc>, to: &str) -> MessageId {
    let new = NewMessage {
        id: MessageId::generate(),
        to: PhoneNumber::parse(to).unwrap(),
        channel: Channel::Sms,
        template: Some("shipping".into()),
        body: "Hi Ada, your order 42 has shipped.".into(),
        locale: None,
        content_sid: None,
        sensitive: false,
        segments: 1,
        priority: Priority::Normal,
        api_key: "shop".into(),
        idempotency_key: None,
        idempotency_fingerprint: None,
        verification_id: None,
        send_before: None,
        request_id: None,
        traceparent: None,
        created_at: at,
    };
    store.enqueue(new.clone()).await.unwrap();
    let claimed = store
        .claim_due(at, 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let attempt = Attempt {
        number: 1,
        provider: Some("twilio".into()),
        started_at: at,
        finished_at: at,
        outcome: AttemptOutcome::Sent,
        http_status: Some(201),
        error_code: None,
        error_message: None,
        traceparent: None,
    };
    let outcome = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: format!("SM{}", new.id),
        segments: None,
        price: Some(Price {
            amount: "0.0079".into(),
            currency: "USD".into(),
        }),
    };
    assert!(store
        .finish(claimed.claim, new.id, Some(attempt), outcome, at)
        .await
        .unwrap());
    new.id
}

async fn report(store: &SqliteStore, day: DateTime<Utc>) -> String {
    let query = UsageQuery {
        since: day,
        until: day + TimeDelta::days(1),
        group_by: UsageGrouping::Country,
        api_key: None,
    };
    format!(
        "{:?} {:?}",
        store.usage(&query).await.unwrap(),
        store.costs(&query).await.unwrap()
    )
}

#[tokio::test]
async fn retention_empties_bodies_after_72_hours_and_removes_messages_after_90_days_keeping_the_report(
) {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    let metrics = Arc::new(Metrics::new());
    let job = RetentionJob::new(store.clone(), clock.clone(), metrics.clone(), config());
    let day = clock.now();
    let mut ids = Vec::new();
    for (minutes, to) in [
        (0, "+15551234567"),
        (1, "+447700900123"),
        (2, "+15551234567"),
    ] {
        ids.push(sent(&store, day + TimeDelta::minutes(minutes), to).await);
    }
    let before = report(&store, day).await;
    assert!(before.contains("messages: 2"), "{before}");

    clock.advance(TimeDelta::hours(71));
    assert_eq!(
        job.run_once().await.unwrap(),
        RetentionRun::Done {
            removed: Removed::default(),
            bodies_emptied: 0
        }
    );
    assert!(!store.get(ids[0]).await.unwrap().unwrap().body.is_empty());

    clock.advance(TimeDelta::hours(2));
    assert_eq!(
        job.run_once().await.unwrap(),
        RetentionRun::Done {
            removed: Removed::default(),
            bodies_emptied: 3
        }
    );
    for id in &ids {
        assert_eq!(store.get(*id).await.unwrap().unwrap().body, "");
    }

    clock.advance(TimeDelta::days(89) - TimeDelta::hours(73));
    let RetentionRun::Done { removed, .. } = job.run_once().await.unwrap() else {
        panic!("a lone runner skipped")
    };
    assert_eq!(removed, Removed::default(), "removed at 89 days");

    clock.advance(TimeDelta::days(1) + TimeDelta::minutes(3));
    let RetentionRun::Done { removed, .. } = job.run_once().await.unwrap() else {
        panic!("a lone runner skipped")
    };
    assert_eq!(
        removed,
        Removed {
            messages: 3,
            attempts: 3,
            ..Removed::default()
        }
    );
    for id in &ids {
        assert_eq!(store.get(*id).await.unwrap(), None);
    }
    assert_eq!(report(&store, day).await, before);
    let exposition = metrics.render(store.as_ref(), clock.now()).await.unwrap();
    for line in [
        r#"sms_notify_data_removed_rows_total{kind="messages",reason="retention"} 3"#,
        r#"sms_notify_data_removed_rows_total{kind="attempts",reason="retention"} 3"#,
        r#"sms_notify_data_removed_rows_total{kind="message_bodies",reason="retention"} 3"#,
    ] {
        assert!(exposition.lines().any(|shown| shown == line), "no `{line}`");
    }
}

/// The store, counting how many of its retention calls run at once; each takes a while, so
/// that two runners that did not exclude each other would overlap.
struct Watched {
    store: Arc<SqliteStore>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Watched {
    async fn watch<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let result = work.await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[async_trait]
impl DataLifecycle for Watched {
    async fn take_lease(
        &self,
        job: &str,
        holder: LeaseHolder,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.take_lease(job, holder, now, until).await
    }

    async fn release_lease(&self, job: &str, holder: LeaseHolder) -> Result<(), StoreError> {
        self.store.release_lease(job, holder).await
    }

    async fn remove_expired(
        &self,
        kind: Retained,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Removed, StoreError> {
        self.watch(self.store.remove_expired(kind, before, limit))
            .await
    }

    async fn prepare_partitions(&self) -> Result<u64, StoreError> {
        self.watch(self.store.prepare_partitions()).await
    }

    async fn empty_bodies(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.watch(self.store.empty_bodies(before, limit)).await
    }

    async fn cancel_verifications_to(
        &self,
        to: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.store.cancel_verifications_to(to, now).await
    }

    async fn erase_number(&self, to: &PhoneNumber) -> Result<Removed, StoreError> {
        self.store.erase_number(to).await
    }

    async fn fold_rollups(
        &self,
        now: DateTime<Utc>,
        settle: TimeDelta,
        max_hours: u32,
    ) -> Result<ports::FoldStep, StoreError> {
        self.watch(self.store.fold_rollups(now, settle, max_hours))
            .await
    }

    async fn rollup_watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.rollup_watermark().await
    }
}

#[tokio::test]
async fn two_retention_runners_never_work_at_once_and_the_second_skips() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    for minutes in 0..5 {
        sent(
            &store,
            clock.now() + TimeDelta::minutes(minutes),
            "+15551234567",
        )
        .await;
    }
    clock.advance(TimeDelta::days(91));
    let watched = Arc::new(Watched {
        store: store.clone(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let runner = || {
        RetentionJob::new(
            watched.clone(),
            clock.clone(),
            Arc::new(Metrics::new()),
            config(),
        )
    };
    let (first, second) = (runner(), runner());

    let (one, other) = tokio::join!(first.run_once(), second.run_once());

    let mut runs = [one.unwrap(), other.unwrap()];
    runs.sort_by_key(|run| matches!(run, RetentionRun::Done { .. }));
    assert_eq!(runs[0], RetentionRun::Skipped, "{runs:?}");
    let RetentionRun::Done { removed, .. } = runs[1] else {
        panic!("neither ran: {runs:?}")
    };
    assert_eq!(removed.messages, 5, "batches of 2 until none is left");
    assert_eq!(
        watched.most.load(Ordering::SeqCst),
        1,
        "two runners overlapped"
    );
    // The lease was given up: the next run, on either instance, is not kept waiting.
    assert!(matches!(
        second.run_once().await.unwrap(),
        RetentionRun::Done { .. }
    ));
}

/// A verification of `to` started at `at` whose one code is sent at once for 0.0079 USD, and
/// approved after `approved_after` when given.
async fn verified(
    store: &SqliteStore,
    at: DateTime<Utc>,
    to: &str,
    approved_after: Option<TimeDelta>,
) {
    // Here only: its `get` would be ambiguous beside `MessageStore`'s elsewhere.
    use ports::VerificationStore;
    let verification = Verification::start(
        PhoneNumber::parse(to).unwrap(),
        Channel::Sms,
        "auth".into(),
        &VerificationPolicy::default(),
        at,
    );
    let code = NewMessage {
        id: MessageId::generate(),
        to: verification.to.clone(),
        channel: Channel::Sms,
        template: Some("two-factor-auth".into()),
        body: "Your code is 402913".into(),
        locale: None,
        content_sid: None,
        sensitive: true,
        segments: 1,
        priority: Priority::Verification,
        api_key: "auth".into(),
        idempotency_key: None,
        idempotency_fingerprint: None,
        verification_id: Some(verification.id),
        send_before: Some(verification.expires_at),
        request_id: None,
        traceparent: None,
        created_at: at,
    };
    let id = code.id;
    store
        .create(&verification, CodeHash::from_bytes(vec![1; 32]), code, None)
        .await
        .unwrap();
    let claimed = store
        .claim_due(at, 1, Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    let attempt = Attempt {
        number: 1,
        provider: Some("twilio".into()),
        started_at: at,
        finished_at: at,
        outcome: AttemptOutcome::Sent,
        http_status: Some(201),
        error_code: None,
        error_message: None,
        traceparent: None,
    };
    let outcome = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: format!("SM{id}"),
        segments: None,
        price: Some(Price {
            amount: "0.0079".into(),
            currency: "USD".into(),
        }),
    };
    assert!(store
        .finish(claimed.claim, id, Some(attempt), outcome, at)
        .await
        .unwrap());
    let (status, after) = match approved_after {
        Some(after) => (VerificationStatus::Approved, after),
        None => (VerificationStatus::Expired, TimeDelta::minutes(10)),
    };
    assert!(store
        .conclude(verification.id, status, at + after)
        .await
        .unwrap());
}

async fn conversion(store: &SqliteStore, day: DateTime<Utc>) -> String {
    let mut shown = String::new();
    for group_by in [ConversionGrouping::Country, ConversionGrouping::Prefix] {
        let query = ConversionQuery {
            since: day,
            until: day + TimeDelta::days(1),
            group_by,
            api_key: None,
        };
        shown.push_str(&format!("{:?}\n", store.conversion(&query).await.unwrap()));
    }
    shown
}

#[tokio::test]
async fn verifications_removed_after_90_days_keep_their_conversion_figures() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    let job = RetentionJob::new(
        store.clone(),
        clock.clone(),
        Arc::new(Metrics::new()),
        config(),
    );
    let day = clock.now();
    verified(&store, day, "+447700900123", Some(TimeDelta::seconds(30))).await;
    verified(&store, day + TimeDelta::minutes(5), "+447700900456", None).await;
    verified(
        &store,
        day + TimeDelta::minutes(70),
        "+15551234567",
        Some(TimeDelta::seconds(75)),
    )
    .await;
    let before = conversion(&store, day).await;
    assert!(
        before.contains("started: 2, codes_sent: 2, approved: 1"),
        "{before}"
    );

    clock.advance(TimeDelta::days(91));
    let RetentionRun::Done { removed, .. } = job.run_once().await.unwrap() else {
        panic!("a lone runner skipped")
    };
    assert_eq!((removed.verifications, removed.messages), (3, 3));
    assert_eq!(conversion(&store, day).await, before);
    assert!(store.rollup_watermark().await.unwrap() > Some(day + TimeDelta::days(90)));
}
