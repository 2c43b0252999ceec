//! The dispatcher's guarantees across processes: a killed instance loses nothing, several
//! instances on one database send each message once within the caps they share, and SIGTERM
//! finishes or hands back what is in flight and exits 0.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use domain::{MessageId, MessageStatus};
use ports::MessageStore;
use wiremock::MockServer;

use crate::fake_twilio::{form_fields, messages_post, Recorder};
use crate::service::{shared_env, Service};
use crate::support::FROM;

const TO: &str = "+15551234567";

async fn status_of(store: &PgStore, id: &str) -> MessageStatus {
    let id: MessageId = id.parse().unwrap();
    MessageStore::get(store, id).await.unwrap().unwrap().status
}

/// Waits until every message is `sent`.
async fn wait_until_all_sent(store: &PgStore, ids: &[String], patience: Duration) {
    let deadline = Instant::now() + patience;
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            if status_of(store, id).await != MessageStatus::Sent {
                still.push(id);
            }
        }
        pending = still;
        assert!(
            pending.is_empty() || Instant::now() < deadline,
            "{} messages are still not sent",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Queues `count` messages with bodies `"{label} {n}"` through `services` in turn; returns
/// (id, body) pairs.
async fn queue(services: &[Service], label: &str, count: usize) -> Vec<(String, String)> {
    let mut queued = Vec::with_capacity(count);
    for n in 0..count {
        let body = format!("{label} {n}");
        let id = services[n % services.len()].send(TO, &body).await;
        queued.push((id, body));
    }
    queued
}

async fn mount_recorder(
    twilio: &MockServer,
    delay: Duration,
    times: impl Into<wiremock::Times>,
) -> Recorder {
    let recorder = Recorder::new(delay);
    messages_post(form_fields(&[("To", TO), ("From", FROM)], &["Body"]))
        .respond_with(recorder.clone())
        .expect(times)
        .mount(twilio)
        .await;
    recorder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_nothing_and_resends_only_what_was_in_flight() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let recorder = mount_recorder(&twilio, Duration::from_millis(100), 500..).await;
    let env = shared_env(
        &database,
        &twilio,
        &[
            ("DISPATCH_CONCURRENCY", "10"),
            ("DISPATCH_LEASE_SECONDS", "2"),
        ],
    );
    let first = Service::start(&env).await;
    let queued = queue(std::slice::from_ref(&first), "crash", 500).await;
    recorder.wait_for(150, Duration::from_secs(30)).await;
    first.kill().await;

    let store = database.store().await;
    let mut in_flight_at_kill = HashSet::new();
    for (id, body) in &queued {
        if status_of(&store, id).await == MessageStatus::Sending {
            in_flight_at_kill.insert(body.clone());
        }
    }
    assert!(
        !in_flight_at_kill.is_empty(),
        "the kill must catch sends in flight, or this test proves nothing"
    );

    let _second = Service::start(&env).await;
    let ids: Vec<String> = queued.iter().map(|(id, _)| id.clone()).collect();
    wait_until_all_sent(&store, &ids, Duration::from_secs(40)).await;

    let mut sends: HashMap<String, usize> = HashMap::new();
    for (_, body) in recorder.arrivals() {
        *sends.entry(body).or_default() += 1;
    }
    for (_, body) in &queued {
        assert!(sends.contains_key(body), "{body} never reached Twilio");
    }
    let twice: Vec<&String> = sends
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(body, _)| body)
        .collect();
    for body in &twice {
        assert!(
            in_flight_at_kill.contains(*body),
            "{body} was sent twice but was not in flight at the kill"
        );
        assert_eq!(sends[*body], 2, "{body}");
    }
    println!(
        "crash test: 500 messages, {} in flight at the SIGKILL, {} sent twice (all among those), none lost",
        in_flight_at_kill.len(),
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_send_a_thousand_messages_once_each_within_the_shared_rate() {
    const MPS: usize = 100;
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let recorder = mount_recorder(&twilio, Duration::from_millis(20), 1000).await;
    let env = shared_env(
        &database,
        &twilio,
        &[("DISPATCH_CONCURRENCY", "8"), ("SENDER_MPS", "100")],
    );
    let services = vec![
        Service::start(&env).await,
        Service::start(&env).await,
        Service::start(&env).await,
    ];
    let queued = queue(&services, "load", 1000).await;
    let ids: Vec<String> = queued.iter().map(|(id, _)| id.clone()).collect();
    let store = database.store().await;
    wait_until_all_sent(&store, &ids, Duration::from_secs(40)).await;

    let mut bodies: Vec<String> = recorder
        .arrivals()
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    bodies.sort();
    let mut expected: Vec<String> = queued.into_iter().map(|(_, body)| body).collect();
    expected.sort();
    assert_eq!(bodies, expected, "each message reached Twilio exactly once");
    // Send times are spaced exactly; Twilio sees them with the jitter of three processes on
    // a busy machine, so a few more than the rate may land within one second.
    let most = recorder.most_in_one_second();
    println!("three instances: at most {most} sends within one second (SENDER_MPS={MPS})");
    assert!(most <= MPS + MPS / 5, "{most} sends within one second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_keep_their_provider_calls_within_one_shared_concurrency() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let recorder = mount_recorder(&twilio, Duration::from_millis(300), 24).await;
    let env = shared_env(&database, &twilio, &[("DISPATCH_CONCURRENCY", "4")]);
    let services = vec![
        Service::start(&env).await,
        Service::start(&env).await,
        Service::start(&env).await,
    ];
    let queued = queue(&services, "concurrent", 24).await;
    let ids: Vec<String> = queued.iter().map(|(id, _)| id.clone()).collect();
    wait_until_all_sent(&database.store().await, &ids, Duration::from_secs(30)).await;
    // Per instance, the cap would let twelve calls run at once.
    assert_eq!(recorder.most_at_once(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_calls_in_flight_hands_back_the_rest_and_exits_0() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let recorder = mount_recorder(&twilio, Duration::from_millis(500), 1..=6).await;
    // Two sends a second: most messages wait for their send time when the signal comes.
    let env = shared_env(&database, &twilio, &[("SENDER_MPS", "2")]);
    let service = Service::start(&env).await;
    let queued = queue(std::slice::from_ref(&service), "shutdown", 10).await;
    recorder.wait_for(1, Duration::from_secs(10)).await;

    let status = service.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));

    let store = database.store().await;
    let mut sent = 0;
    for (id, _) in &queued {
        let message = MessageStore::get(&store, id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        match message.status {
            MessageStatus::Sent => sent += 1,
            MessageStatus::Queued => assert_eq!(message.attempt_count, 0, "{id}"),
            other => panic!("{id} is {other} after the shutdown"),
        }
    }
    assert_eq!(
        sent,
        recorder.count(),
        "every call that reached Twilio was recorded"
    );
    assert!(sent < queued.len(), "some messages were handed back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_a_call_that_outlasts_the_grace_period_and_exits_0() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    let recorder = mount_recorder(&twilio, Duration::from_secs(60), 1).await;
    let env = shared_env(
        &database,
        &twilio,
        &[
            ("SHUTDOWN_GRACE_SECONDS", "1"),
            ("TWILIO_REQUEST_TIMEOUT_MS", "120000"),
        ],
    );
    let service = Service::start(&env).await;
    let id = service.send(TO, "slow").await;
    recorder.wait_for(1, Duration::from_secs(10)).await;

    let status = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    let store = database.store().await;
    assert_eq!(status_of(&store, &id).await, MessageStatus::Queued);
}
