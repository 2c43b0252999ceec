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
    sent_through(store, "twilio", SID, price, t0() + secs(1)).await
}

/// A notification accepted by `provider` as `sid` at `at`.
async fn sent_through<S: StoreUnderTest>(
    store: &S,
    provider: &str,
    sid: &str,
    price: Option<Price>,
    at: DateTime<Utc>,
) -> Message {
    let queued = enqueue_new(store, notification(at - secs(1))).await;
    let claimed = claim_one(store, at - secs(1)).await;
    let outcome = DispatchOutcome::Sent {
        provider: provider.into(),
        provider_sid: sid.into(),
        segments: None,
        price,
    };
    assert!(store
        .finish(claimed.claim, queued.id, None, outcome, at)
        .await
        .unwrap());
    message(store, queued.id).await
}

pub async fn sent_message_keeps_the_providers_price<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, Some(usd("0.0079"))).await;
    assert_eq!(sent.status, MessageStatus::Sent);
    assert_eq!(sent.provider.as_deref(), Some("twilio"));
    assert_eq!(sent.provider_sid.as_deref(), Some(SID));
    assert_eq!(sent.price, Some(usd("0.0079")));

    let unpriced = enqueue_new(&store, notification(t0())).await;
    assert_eq!(unpriced.price, None);
}

pub async fn delivery_report_moves_a_sent_message_into_its_history<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, None).await;
    let delivered = report(MessageStatus::Delivered, t0() + secs(9));

    let update = store
        .record_delivery(SID, delivered.clone(), None)
        .await
        .unwrap();

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
    let sent = sent_message(&store, Some(usd("0.0079"))).await;
    let undelivered = DeliveryEvent {
        error_code: Some("30003".into()),
        error_message: Some("Unreachable destination handset".into()),
        price: Some(usd("0.0075")),
        ..report(MessageStatus::Undelivered, t0() + secs(20))
    };

    store
        .record_delivery(SID, undelivered.clone(), None)
        .await
        .unwrap();

    let stored = message(&store, sent.id).await;
    assert_eq!(stored.status, MessageStatus::Undelivered);
    assert_eq!(stored.error_code.as_deref(), Some("30003"));
    assert_eq!(
        stored.error_message.as_deref(),
        Some("Unreachable destination handset")
    );
    assert_eq!(stored.price, Some(usd("0.0075")));
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![undelivered]
    );
}

pub async fn late_or_repeated_delivery_reports_change_nothing<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, Some(usd("0.0079"))).await;
    let delivered = report(MessageStatus::Delivered, t0() + secs(9));
    store
        .record_delivery(SID, delivered.clone(), None)
        .await
        .unwrap();
    let after_delivery = message(&store, sent.id).await;

    let late_sent = report(MessageStatus::Sent, t0() + secs(10));
    let replay = report(MessageStatus::Delivered, t0() + secs(11));
    let late_failure = DeliveryEvent {
        error_code: Some("30008".into()),
        price: Some(usd("-1.00000")),
        ..report(MessageStatus::Failed, t0() + secs(12))
    };
    for event in [late_sent, replay, late_failure] {
        let update = store
            .record_delivery(SID, event.clone(), None)
            .await
            .unwrap();
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
            None,
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
            tokio::spawn(async move { store.record_delivery(SID, delivered, None).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            DeliveryUpdate::Applied(_) => applied += 1,
            DeliveryUpdate::Ignored(message) => {
                assert_eq!(message.status, MessageStatus::Delivered);
            }
            other => panic!("expected applied or ignored, got {other:?}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![delivered]
    );
}

pub async fn a_report_with_a_token_already_applied_is_a_duplicate<S: StoreUnderTest>(store: S) {
    let sent = sent_message(&store, None).await;
    let undelivered = report(MessageStatus::Undelivered, t0() + secs(9));
    let applied = store
        .record_delivery(SID, undelivered.clone(), Some("token-1".into()))
        .await
        .unwrap();
    let after = message(&store, sent.id).await;
    assert_eq!(applied, DeliveryUpdate::Applied(after.clone()));

    // The status machine alone would call this one Ignored; the token recognises it.
    let again = report(MessageStatus::Delivered, t0() + secs(10));
    let update = store
        .record_delivery(SID, again, Some("token-1".into()))
        .await
        .unwrap();
    assert_eq!(update, DeliveryUpdate::Duplicate(after.clone()));

    // Tokens are the provider's per report: another message may bring the same one.
    let other = sent_through(&store, "twilio", "SMother", None, t0() + secs(2)).await;
    let update = store
        .record_delivery(
            "SMother",
            report(MessageStatus::Delivered, t0() + secs(11)),
            Some("token-1".into()),
        )
        .await
        .unwrap();
    assert!(matches!(update, DeliveryUpdate::Applied(_)), "{update:?}");

    assert_eq!(message(&store, sent.id).await, after);
    assert_eq!(
        store.delivery_events(sent.id).await.unwrap(),
        vec![undelivered]
    );
    assert_eq!(store.delivery_events(other.id).await.unwrap().len(), 1);
}

pub async fn unconfirmed_sent_messages_are_claimed_oldest_first_per_provider_and_held<
    S: StoreUnderTest,
>(
    store: S,
) {
    let older = sent_through(&store, "twilio", "SM1", None, t0() + secs(10)).await;
    let old = sent_through(&store, "twilio", "SM2", None, t0() + secs(20)).await;
    let _recent = sent_through(&store, "twilio", "SM3", None, t0() + secs(100)).await;
    let _elsewhere = sent_through(&store, "vonage", "V4", None, t0() + secs(10)).await;
    let ancient = sent_through(&store, "twilio", "SM5", None, t0() + secs(1)).await;
    let delivered = sent_through(&store, "twilio", "SM6", None, t0() + secs(10)).await;
    store
        .record_delivery(
            "SM6",
            report(MessageStatus::Delivered, t0() + secs(30)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        message(&store, delivered.id).await.status,
        MessageStatus::Delivered
    );

    let now = t0() + secs(60);
    let claim = |now, limit| {
        store.claim_unconfirmed(
            "twilio",
            t0() + secs(5),
            t0() + secs(50),
            now,
            limit,
            now + secs(60),
        )
    };
    let first: Vec<_> = claim(now, 1).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![older.id]
    );
    let second = claim(now, 10).await.unwrap();
    assert_eq!(
        second.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![old.id]
    );
    assert!(claim(now + secs(59), 10).await.unwrap().is_empty());

    // The hold over, both may be looked up again; the one sent too long ago never is.
    let again = claim(now + secs(60), 10).await.unwrap();
    assert_eq!(
        again.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![older.id, old.id]
    );
    assert!(!again.iter().any(|m| m.id == ancient.id));
    assert!(again.iter().all(|m| m.status == MessageStatus::Sent));
}

pub async fn concurrent_unconfirmed_claims_never_share_a_message<S: StoreUnderTest>(store: S) {
    for n in 0..20 {
        sent_through(&store, "twilio", &format!("SM{n}"), None, t0() + secs(10)).await;
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_unconfirmed(
                        "twilio",
                        t0(),
                        t0() + secs(50),
                        t0() + secs(60),
                        8,
                        t0() + secs(120),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for task in tasks {
        for claimed in task.await.unwrap() {
            assert!(seen.insert(claimed.id), "{} claimed twice", claimed.id);
        }
    }
    assert_eq!(seen.len(), 20);
}
