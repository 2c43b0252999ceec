//! Conformance of [`MessageStore::record_delivery`]: carrier reports move a sent message
//! forward only, once, and join its history; the price is kept.

use chrono::{DateTime, Utc};
use domain::{DeliveryEvent, Message, MessageStatus, Price};

use super::{claim_one, enqueue_new, message, notification, secs, t0, StoreUnderTest};
use crate::{DeliveryUpdate, DispatchOutcome};

const SID: &str = "SM0123456789abcdef0123456789abcdef";

fn usd(amount: &str) -> Price {
    Price {
        amount: amount.into(),
        currency: "USD".into(),
    }
}

fn report(status: MessageStatus, received_at: DateTime<Utc>) -> DeliveryEvent {
    DeliveryEvent {
        status,
        error_code: None,
        error_message: None,
        price: None,
        received_at,
    }
}

/// A notification accepted by the provider as [`SID`] at `t0 + 1s`, for `price`.
async fn sent_message<S: StoreUnderTest>(store: &S, price: Option<Price>) -> Message {
    let queued = enqueue_new(store, notification(t0())).await;
    let claimed = claim_one(store, t0()).await;
    let outcome = DispatchOutcome::Sent {
        provider_sid: SID.into(),
        segments: None,
        price,
    };
    assert!(store
        .finish(claimed.claim, queued.id, None, outcome, t0() + secs(1))
        .await
        .unwrap());
    message(store, queued.id).await
}

pub async fn sent_message_keeps_the_providers_price<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, Some(usd("-0.00790"))).await;
    assert_eq!(sent.status, MessageStatus::Sent);
    assert_eq!(sent.provider_sid.as_deref(), Some(SID));
    assert_eq!(sent.price, Some(usd("-0.00790")));

    let unpriced = enqueue_new(&store, notification(t0())).await;
    assert_eq!(unpriced.price, None);
}

pub async fn delivery_report_moves_a_sent_message_into_its_history<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, None).await;
    let delivered = report(MessageStatus::Delivered, t0() + secs(9));

    let update = store.record_delivery(SID, delivered.clone()).await.unwrap();

    let stored = message(&store, sent.id).await;
    assert_eq!(stored.status, MessageStatus::Delivered);
    assert_eq!(stored.updated_at, t0() + secs(9));
    assert_eq!(update, DeliveryUpdate::Applied(stored));
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![delivered]
    );
}

pub async fn undelivered_report_keeps_the_carrier_error_and_price<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, Some(usd("-0.00790"))).await;
    let undelivered = DeliveryEvent {
        error_code: Some("30003".into()),
        error_message: Some("Unreachable destination handset".into()),
        price: Some(usd("-0.00750")),
        ..report(MessageStatus::Undelivered, t0() + secs(20))
    };

    store
        .record_delivery(SID, undelivered.clone())
        .await
        .unwrap();

    let stored = message(&store, sent.id).await;
    assert_eq!(stored.status, MessageStatus::Undelivered);
    assert_eq!(stored.error_code.as_deref(), Some("30003"));
    assert_eq!(
        stored.error_message.as_deref(),
        Some("Unreachable destination handset")
    );
    assert_eq!(stored.price, Some(usd("-0.00750")));
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![undelivered]
    );
}

pub async fn late_or_repeated_delivery_reports_change_nothing<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, Some(usd("-0.00790"))).await;
    let delivered = report(MessageStatus::Delivered, t0() + secs(9));
    store.record_delivery(SID, delivered.clone()).await.unwrap();
    let after_delivery = message(&store, sent.id).await;

    let late_sent = report(MessageStatus::Sent, t0() + secs(10));
    let replay = report(MessageStatus::Delivered, t0() + secs(11));
    let late_failure = DeliveryEvent {
        error_code: Some("30008".into()),
        price: Some(usd("-1.00000")),
        ..report(MessageStatus::Failed, t0() + secs(12))
    };
    for event in [late_sent, replay, late_failure] {
        let update = store.record_delivery(SID, event.clone()).await.unwrap();
        assert_eq!(
            update,
            DeliveryUpdate::Ignored(after_delivery.clone()),
            "{event:?}"
        );
    }

    assert_eq!(message(&store, sent.id).await, after_delivery);
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![delivered]
    );
}

pub async fn delivery_report_for_an_unknown_sid_changes_nothing<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, None).await;

    let update = store
        .record_delivery(
            "SMffffffffffffffffffffffffffffffff",
            report(MessageStatus::Delivered, t0() + secs(5)),
        )
        .await
        .unwrap();

    assert_eq!(update, DeliveryUpdate::UnknownMessage);
    assert_eq!(message(&store, sent.id).await, sent);
    assert!(store.delivery_events(sent.id).await.unwrap().is_empty());
}

pub async fn concurrent_identical_reports_apply_once<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, None).await;
    let delivered = report(MessageStatus::Delivered, t0() + secs(9));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let delivered = delivered.clone();
            tokio::spawn(async move { store.record_delivery(SID, delivered).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            DeliveryUpdate::Applied(_) => applied += 1,
            DeliveryUpdate::Ignored(message) => {
                assert_eq!(message.status, MessageStatus::Delivered);
            }
            DeliveryUpdate::UnknownMessage => panic!("the message has the SID"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![delivered]
    );
}
