//! Conformance of [`WebhookStore`]: endpoints kept per API key; an event and its deliveries
//! written with the change they report (a conclusion, a message's status, a fraud block, an
//! expiry noticed), only for endpoints receiving the type, numbered per object; deliveries
//! claimed once under a lease, retried, finished only by their claim, and replayed; the
//! objects a batch of events is rendered from, read many at once as they read one by one.

use std::time::Duration;

use domain::fraud::{Action, Decision, Reason, ReasonCode};
use domain::webhook::{EndpointId, EventType};
use domain::{
    AttemptOutcome, DeliveryEvent, MessageId, MessageStatus, Verification, VerificationId,
    VerificationStatus,
};
use uuid::Uuid;

use super::{
    attempt, claim_one, create_verification, enqueue_new, notification, phone, retry_at, secs,
    sent, t0, verification, StoreUnderTest,
};
use crate::{
    ClaimedDelivery, DeliveryAnswer, DeliveryResult, DispatchOutcome, LoggedDecision, MessageStore,
    NewEvent, VerificationStore, WebhookEndpoint,
};

const LEASE: Duration = Duration::from_secs(30);

/// An enabled endpoint of `api_key` receiving `events`, created `created` seconds after `t0`.
pub fn endpoint(api_key: &str, events: &[EventType], created: i64) -> WebhookEndpoint {
    WebhookEndpoint {
        id: EndpointId::generate(),
        api_key: api_key.into(),
        url: format!("https://hooks.example.com/{api_key}/{created}"),
        description: Some("orders service".into()),
        events: events.to_vec(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        previous_secret: None,
        previous_secret_until: None,
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: t0() + secs(created),
        updated_at: t0() + secs(created),
    }
}

async fn claim_all<S: StoreUnderTest>(
    store: &S,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ClaimedDelivery> {
    let mut claimed = store.claim_deliveries(now, 100, LEASE).await.unwrap();
    claimed.sort_by_key(|delivery| (delivery.event.created_at, delivery.event.sequence));
    claimed
}

pub async fn webhook_endpoints_are_kept_per_api_key_updated_and_deleted<S: StoreUnderTest>(
    store: S,
) {
    let first = endpoint("auth", &[EventType::VerificationApproved], 0);
    let second = endpoint(
        "auth",
        &[EventType::MessageSent, EventType::MessageFailed],
        10,
    );
    let other = endpoint("shop", &[EventType::MessageDelivered], 5);
    for created in [&second, &other, &first] {
        store.create_endpoint(created).await.unwrap();
    }

    assert_eq!(
        store.endpoint(second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.endpoints(Some("auth".into())).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store.endpoints(None).await.unwrap(),
        vec![first.clone(), other.clone(), second.clone()]
    );

    let rotated = WebhookEndpoint {
        url: "https://hooks.example.com/new".into(),
        description: None,
        events: vec![EventType::VerificationExpired],
        secret: "whsec_bmV3IHNlY3JldCBvZiAyNCBieXRlcyE=".into(),
        previous_secret: Some(first.secret.clone()),
        previous_secret_until: Some(t0() + secs(86_400)),
        enabled: false,
        disabled_reason: Some("failing".into()),
        failing_since: Some(t0() + secs(3)),
        updated_at: t0() + secs(20),
        ..first.clone()
    };
    assert!(store.update_endpoint(&rotated).await.unwrap());
    assert_eq!(store.endpoint(first.id).await.unwrap(), Some(rotated));

    assert!(store.delete_endpoint(first.id).await.unwrap());
    assert!(!store.delete_endpoint(first.id).await.unwrap());
    assert_eq!(store.endpoint(first.id).await.unwrap(), None);
    assert!(!store
        .update_endpoint(&endpoint("auth", &[], 0))
        .await
        .unwrap());
}

pub async fn a_concluded_verification_is_an_event_for_each_endpoint_receiving_its_type<
    S: StoreUnderTest,
>(
    store: S,
) {
    let approvals = endpoint("auth", &[EventType::VerificationApproved], 0);
    let sends_only = endpoint("auth", &[EventType::MessageSent], 0);
    let elsewhere = endpoint("shop", &[EventType::VerificationApproved], 0);
    for created in [&approvals, &sends_only, &elsewhere] {
        store.create_endpoint(created).await.unwrap();
    }
    let approved = verification(t0());
    create_verification(&store, &approved, 1).await;
    let canceled = verification(t0());
    create_verification(&store, &canceled, 2).await;

    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(30))
        .await
        .unwrap());
    // No endpoint of `auth` receives cancellations: nothing is recorded.
    assert!(store
        .conclude(canceled.id, VerificationStatus::Canceled, t0() + secs(31))
        .await
        .unwrap());

    let claimed = claim_all(&store, t0() + secs(40)).await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let delivery = &claimed[0];
    assert_eq!(delivery.endpoint, approvals);
    assert_eq!(delivery.attempt, 1);
    assert_eq!(delivery.event.kind, EventType::VerificationApproved);
    assert_eq!(delivery.event.object_id, approved.id.as_uuid());
    assert_eq!(delivery.event.api_key, "auth");
    assert_eq!(delivery.event.sequence, 1);
    assert_eq!(delivery.event.created_at, t0() + secs(30));
    assert_eq!(delivery.event.status.as_deref(), Some("approved"));
    assert_eq!(delivery.event.data, None);
    assert_eq!(
        store.events_of(canceled.id.as_uuid()).await.unwrap(),
        vec![]
    );
}

pub async fn a_refused_conclusion_records_no_event<S: StoreUnderTest>(store: S) {
    store
        .create_endpoint(&endpoint("auth", &EventType::ALL, 0))
        .await
        .unwrap();
    let approved = verification(t0());
    create_verification(&store, &approved, 1).await;
    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(30))
        .await
        .unwrap());
    assert!(!store
        .conclude(approved.id, VerificationStatus::Canceled, t0() + secs(31))
        .await
        .unwrap());

    let events = store.events_of(approved.id.as_uuid()).await.unwrap();
    assert_eq!(
        events.iter().map(|event| event.kind).collect::<Vec<_>>(),
        [EventType::VerificationApproved]
    );
}

pub async fn a_messages_statuses_are_events_numbered_in_order<S: StoreUnderTest>(store: S) {
    store
        .create_endpoint(&endpoint(
            "shop",
            &[EventType::MessageSent, EventType::MessageUndelivered],
            0,
        ))
        .await
        .unwrap();
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    let sent = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: "SMwebhook".into(),
        segments: None,
        price: None,
    };
    assert!(store
        .finish(claimed.claim, queued.id, None, sent, t0() + secs(1))
        .await
        .unwrap());
    let undelivered = DeliveryEvent {
        status: MessageStatus::Undelivered,
        error_code: Some("30003".into()),
        error_message: Some("Unreachable destination handset".into()),
        price: None,
        received_at: t0() + secs(9),
    };
    store
        .record_delivery("SMwebhook", undelivered, None)
        .await
        .unwrap();

    let events = store.events_of(queued.id.as_uuid()).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|event| {
            (
                event.kind,
                event.sequence,
                event.status.as_deref(),
                event.error_code.as_deref(),
                event.created_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                EventType::MessageSent,
                1,
                Some("sent"),
                None,
                t0() + secs(1)
            ),
            (
                EventType::MessageUndelivered,
                2,
                Some("undelivered"),
                Some("30003"),
                t0() + secs(9)
            ),
        ]
    );
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(claim_all(&store, t0() + secs(10)).await.len(), 2);
}

pub async fn a_fraud_block_is_a_blocked_event<S: StoreUnderTest>(store: S) {
    store
        .create_endpoint(&endpoint("auth", &[EventType::VerificationBlocked], 0))
        .await
        .unwrap();
    let decision = |action| LoggedDecision {
        id: Uuid::new_v4(),
        at: t0() + secs(5),
        to: phone("+449012345678"),
        api_key: "auth".into(),
        client_ip: None,
        user_id: None,
        trusted: false,
        verification_id: None,
        decision: Decision {
            action,
            reasons: vec![Reason::new(
                ReasonCode::LineType,
                "premium_rate numbers are refused",
            )],
        },
    };
    let blocked = decision(Action::Block);
    store.log_decision(&blocked).await.unwrap();
    store
        .log_decision(&decision(Action::Monitor))
        .await
        .unwrap();

    let claimed = claim_all(&store, t0() + secs(5)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event.kind, EventType::VerificationBlocked);
    assert_eq!(claimed[0].event.object_id, blocked.id);
    assert_eq!(
        store.logged_decision(blocked.id).await.unwrap(),
        Some(blocked)
    );
}

pub async fn expired_verifications_are_noticed_once_for_keys_that_want_it<S: StoreUnderTest>(
    store: S,
) {
    store
        .create_endpoint(&endpoint("auth", &[EventType::VerificationExpired], 0))
        .await
        .unwrap();
    let expiring = verification(t0());
    create_verification(&store, &expiring, 1).await;
    let unwatched = Verification {
        api_key: "shop".into(),
        ..verification(t0())
    };
    create_verification(&store, &unwatched, 2).await;
    let after = expiring.expires_at + secs(1);

    assert_eq!(
        store
            .expire_verifications(expiring.expires_at - secs(1), 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.expire_verifications(after, 100).await.unwrap(), 1);
    assert_eq!(store.expire_verifications(after, 100).await.unwrap(), 0);

    let stored = VerificationStore::get(&store, expiring.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, VerificationStatus::Expired);
    let events = store.events_of(expiring.id.as_uuid()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::VerificationExpired);
    assert_eq!(events[0].created_at, after);
    let untouched = VerificationStore::get(&store, unwatched.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.status, VerificationStatus::Pending);
}

pub async fn a_delivery_is_claimed_once_retried_and_finished_only_by_its_claim<
    S: StoreUnderTest,
>(
    store: S,
) {
    let receiver = endpoint("auth", &[EventType::VerificationChannelFallback], 0);
    store.create_endpoint(&receiver).await.unwrap();
    let event = NewEvent {
        kind: EventType::VerificationChannelFallback,
        object_id: Uuid::new_v4(),
        api_key: "auth".into(),
        at: t0(),
        status: Some("pending".into()),
        detail: Some(r#"{"from":"sms","to":"voice"}"#.into()),
    };
    let id = store.record_event(&event).await.unwrap().expect("recorded");
    assert_eq!(
        store
            .record_event(&NewEvent {
                api_key: "nobody".into(),
                ..event.clone()
            })
            .await
            .unwrap(),
        None
    );

    let first = claim_all(&store, t0()).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.id, id);
    assert_eq!(first[0].event.detail, event.detail);
    assert!(claim_all(&store, t0() + secs(1)).await.is_empty(), "leased");

    // Its data is kept once: a second rendering does not replace it.
    assert_eq!(
        store.keep_event_data(id, "{\"a\":1}").await.unwrap(),
        "{\"a\":1}"
    );
    assert_eq!(
        store.keep_event_data(id, "{\"b\":2}").await.unwrap(),
        "{\"a\":1}"
    );

    let retry = DeliveryResult::Retry { at: t0() + secs(5) };
    let answer = DeliveryAnswer {
        http_status: Some(503),
        error: Some("503 Service Unavailable".into()),
    };
    assert!(store
        .finish_delivery(
            first[0].claim,
            first[0].id,
            retry.clone(),
            answer.clone(),
            t0() + secs(1)
        )
        .await
        .unwrap());
    assert!(
        claim_all(&store, t0() + secs(4)).await.is_empty(),
        "not yet due"
    );
    let second = claim_all(&store, t0() + secs(5)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].event.data.as_deref(), Some("{\"a\":1}"));

    // The lease lapses: another worker claims it, and the first claim can no longer finish.
    let third = claim_all(&store, t0() + secs(5) + secs(31)).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].attempt, 3);
    assert!(!store
        .finish_delivery(
            second[0].claim,
            second[0].id,
            DeliveryResult::Delivered,
            DeliveryAnswer::default(),
            t0() + secs(40)
        )
        .await
        .unwrap());
    assert!(store
        .finish_delivery(
            third[0].claim,
            third[0].id,
            DeliveryResult::Delivered,
            DeliveryAnswer::default(),
            t0() + secs(40)
        )
        .await
        .unwrap());
    assert!(
        claim_all(&store, t0() + secs(1_000)).await.is_empty(),
        "delivered"
    );
}

pub async fn failing_and_disabled_endpoints_are_remembered_and_skipped<S: StoreUnderTest>(
    store: S,
) {
    let receiver = endpoint("auth", &[EventType::VerificationApproved], 0);
    store.create_endpoint(&receiver).await.unwrap();
    let failing = store
        .endpoint_answered(receiver.id, false, t0() + secs(1))
        .await
        .unwrap();
    assert_eq!(failing, Some(t0() + secs(1)));
    let still = store
        .endpoint_answered(receiver.id, false, t0() + secs(9))
        .await
        .unwrap();
    assert_eq!(
        still,
        Some(t0() + secs(1)),
        "failing since the first failure"
    );
    assert_eq!(
        store
            .endpoint_answered(receiver.id, true, t0() + secs(10))
            .await
            .unwrap(),
        None
    );

    let approved = verification(t0());
    create_verification(&store, &approved, 1).await;
    assert!(store
        .disable_endpoint(receiver.id, "gone", t0() + secs(11))
        .await
        .unwrap());
    assert!(!store
        .disable_endpoint(receiver.id, "gone", t0() + secs(11))
        .await
        .unwrap());
    let disabled = store.endpoint(receiver.id).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("gone"));

    // A disabled endpoint's events are kept (a replay may want them) but not delivered.
    store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(12))
        .await
        .unwrap();
    assert_eq!(
        store.events_of(approved.id.as_uuid()).await.unwrap().len(),
        1
    );
    assert!(claim_all(&store, t0() + secs(13)).await.is_empty());
}

pub async fn a_replay_queues_again_every_event_since_a_time<S: StoreUnderTest>(store: S) {
    let receiver = endpoint("auth", &[EventType::VerificationApproved], 0);
    store.create_endpoint(&receiver).await.unwrap();
    let mut concluded = Vec::new();
    for (n, seed) in [(10, 1), (20, 2), (30, 3)] {
        let started = verification(t0());
        create_verification(&store, &started, seed).await;
        store
            .conclude(started.id, VerificationStatus::Approved, t0() + secs(n))
            .await
            .unwrap();
        concluded.push(started.id.as_uuid());
    }
    for delivery in claim_all(&store, t0() + secs(40)).await {
        store
            .finish_delivery(
                delivery.claim,
                delivery.id,
                DeliveryResult::Delivered,
                DeliveryAnswer::default(),
                t0() + secs(40),
            )
            .await
            .unwrap();
    }

    assert_eq!(
        store
            .replay(receiver.id, t0() + secs(20), t0() + secs(50))
            .await
            .unwrap(),
        2
    );
    let replayed = claim_all(&store, t0() + secs(50)).await;
    let objects: Vec<_> = replayed.iter().map(|d| d.event.object_id).collect();
    assert_eq!(objects, concluded[1..]);
    assert!(replayed.iter().all(|delivery| delivery.attempt == 1));
}

pub async fn an_erased_numbers_messages_take_their_events_with_them<S: StoreUnderTest>(store: S) {
    store
        .create_endpoint(&endpoint("shop", &[EventType::MessageSent], 0))
        .await
        .unwrap();
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    let sent = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: "SMerased".into(),
        segments: None,
        price: None,
    };
    assert!(store
        .finish(claimed.claim, queued.id, None, sent, t0() + secs(1))
        .await
        .unwrap());
    assert_eq!(store.events_of(queued.id.as_uuid()).await.unwrap().len(), 1);

    store.erase_number(&queued.to).await.unwrap();

    assert!(store
        .events_of(queued.id.as_uuid())
        .await
        .unwrap()
        .is_empty());
}

/// What an operator reads of a failing endpoint: its deliveries that failed their last
/// attempt, the ones still to be retried and the ones given up, newest first; never one
/// delivered, one in flight, or another endpoint's.
pub async fn an_endpoints_failing_deliveries_are_listed_with_their_last_answer<
    S: StoreUnderTest,
>(
    store: S,
) {
    let failing = endpoint("auth", &[EventType::VerificationChannelFallback], 0);
    let healthy = endpoint("auth", &[EventType::VerificationChannelFallback], 1);
    store.create_endpoint(&failing).await.unwrap();
    store.create_endpoint(&healthy).await.unwrap();
    let mut objects = Vec::new();
    for n in 0..4 {
        let object_id = Uuid::new_v4();
        store
            .record_event(&NewEvent {
                kind: EventType::VerificationChannelFallback,
                object_id,
                api_key: "auth".into(),
                at: t0() + secs(n),
                status: Some("pending".into()),
                detail: None,
            })
            .await
            .unwrap()
            .expect("recorded");
        objects.push(object_id);
    }
    let claimed = claim_all(&store, t0() + secs(10)).await;
    assert_eq!(claimed.len(), 8);
    for delivery in &claimed {
        let to_failing = delivery.endpoint.id == failing.id;
        let object = objects
            .iter()
            .position(|id| *id == delivery.event.object_id)
            .unwrap();
        let (result, answer) = match (to_failing, object) {
            (true, 0) => (
                DeliveryResult::Retry {
                    at: t0() + secs(60),
                },
                DeliveryAnswer {
                    http_status: Some(503),
                    error: Some("503 Service Unavailable".into()),
                },
            ),
            (true, 1) => (
                DeliveryResult::Failed,
                DeliveryAnswer {
                    http_status: None,
                    error: Some("connection refused".into()),
                },
            ),
            // Still in flight: not known to fail.
            (true, 3) => continue,
            _ => (DeliveryResult::Delivered, DeliveryAnswer::default()),
        };
        assert!(store
            .finish_delivery(delivery.claim, delivery.id, result, answer, t0() + secs(11))
            .await
            .unwrap());
    }

    let listed = store.failing_deliveries(failing.id, 10).await.unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|delivery| {
            (
                delivery.object_id,
                delivery.kind,
                delivery.attempts,
                delivery.last_http_status,
                delivery.last_error.as_deref(),
                delivery.next_attempt_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                objects[1],
                EventType::VerificationChannelFallback,
                1,
                None,
                Some("connection refused"),
                None
            ),
            (
                objects[0],
                EventType::VerificationChannelFallback,
                1,
                Some(503),
                Some("503 Service Unavailable"),
                Some(t0() + secs(60))
            ),
        ]
    );
    assert!(listed.iter().all(|delivery| delivery.created_at >= t0()));
    assert_eq!(
        store.failing_deliveries(failing.id, 1).await.unwrap().len(),
        1
    );
    assert!(store
        .failing_deliveries(healthy.id, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn an_events_objects_read_many_at_once_are_each_as_read_alone<S: StoreUnderTest>(
    store: S,
) {
    // A message tried twice and one never tried, then ids that name nothing.
    let retried = enqueue_new(&store, notification(t0())).await;
    let untried = enqueue_new(&store, notification(t0() + secs(1))).await;
    let first = claim_one(&store, t0()).await;
    assert_eq!(first.message.id, retried.id);
    let failed = attempt(1, t0(), AttemptOutcome::RetryableError);
    assert!(store
        .finish(
            first.claim,
            retried.id,
            Some(failed),
            retry_at(t0() + secs(10)),
            t0() + secs(1)
        )
        .await
        .unwrap());
    let second = claim_one(&store, t0() + secs(10)).await;
    assert_eq!(second.message.id, retried.id);
    let delivered = attempt(2, t0() + secs(10), AttemptOutcome::Sent);
    assert!(store
        .finish(
            second.claim,
            retried.id,
            Some(delivered),
            sent("SMmany"),
            t0() + secs(11)
        )
        .await
        .unwrap());

    let mut read = store
        .get_with_attempts(&[untried.id, MessageId::generate(), retried.id])
        .await
        .unwrap();
    read.sort_by_key(|(message, _)| message.created_at);
    let mut alone = Vec::new();
    for id in [retried.id, untried.id] {
        let message = MessageStore::get(&store, id).await.unwrap().unwrap();
        alone.push((message, store.attempts(id).await.unwrap()));
    }
    assert_eq!(read, alone);
    assert_eq!(read[0].1.len(), 2, "{read:?}");
    assert!(read[1].1.is_empty(), "{read:?}");
    assert_eq!(store.get_with_attempts(&[]).await.unwrap(), []);

    let approved = verification(t0());
    create_verification(&store, &approved, 1).await;
    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(30))
        .await
        .unwrap());
    let pending = verification(t0() + secs(2));
    create_verification(&store, &pending, 2).await;
    let mut read = store
        .get_many(&[pending.id, VerificationId::generate(), approved.id])
        .await
        .unwrap();
    read.sort_by_key(|verification| verification.created_at);
    let mut alone = Vec::new();
    for id in [approved.id, pending.id] {
        alone.push(VerificationStore::get(&store, id).await.unwrap().unwrap());
    }
    assert_eq!(read, alone);
    assert_eq!(read[0].status, VerificationStatus::Approved);
    assert_eq!(VerificationStore::get_many(&store, &[]).await.unwrap(), []);

    let decision = |action, at| LoggedDecision {
        id: Uuid::new_v4(),
        at: t0() + secs(at),
        to: phone("+449012345678"),
        api_key: "auth".into(),
        client_ip: Some("203.0.113.9".into()),
        user_id: Some("user-7".into()),
        trusted: false,
        verification_id: Some(approved.id),
        decision: Decision {
            action,
            reasons: vec![Reason::new(
                ReasonCode::LineType,
                "premium_rate numbers are refused",
            )],
        },
    };
    let blocked = decision(Action::Block, 5);
    let monitored = decision(Action::Monitor, 6);
    for logged in [&blocked, &monitored] {
        store.log_decision(logged).await.unwrap();
    }
    let mut read = store
        .logged_decisions(&[monitored.id, Uuid::new_v4(), blocked.id])
        .await
        .unwrap();
    read.sort_by_key(|decision| decision.at);
    assert_eq!(read, [blocked, monitored]);
    assert_eq!(store.logged_decisions(&[]).await.unwrap(), []);
}
