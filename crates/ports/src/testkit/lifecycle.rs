//! Conformance of [`DataLifecycle`]: job leases, retention in batches, emptied bodies and the
//! erasure of a number, each checked against what a user or an operator would notice (rows
//! gone or kept, the usage report's figures unchanged).

use domain::fraud::Action;
use domain::{AttemptOutcome, DeliveryEvent, MessageStatus, NewMessage};

use super::fraud::logged;
use super::reports::{range, seed_costs, seed_usage, ReportStoreUnderTest};
use super::{
    alice, attempt, claim_one, create_verification, enqueue_new, message, phone, secs, sent, t0,
    verification, LEASE,
};
use crate::{
    LeaseHolder, MessageStore, Removed, Retained, UsageGrouping, UsageQuery, VerificationStore,
};

const DAY: i64 = 86_400;
const JOB: &str = "retention";

pub async fn a_job_lease_is_held_by_one_holder_until_released_or_run_out<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let takers = (1..=8u128).map(|holder| {
        let store = store.clone();
        tokio::spawn(async move {
            let taken = store
                .take_lease(JOB, LeaseHolder(holder), t0(), t0() + secs(60))
                .await
                .unwrap();
            taken.then_some(holder)
        })
    });
    let mut winners = Vec::new();
    for taker in takers {
        winners.extend(taker.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?} all hold the lease");
    let holder = LeaseHolder(winners[0]);
    let other = LeaseHolder(99);
    let take = |who: LeaseHolder, now: i64, until: i64| {
        store.take_lease(JOB, who, t0() + secs(now), t0() + secs(until))
    };
    assert!(!take(other, 30, 90).await.unwrap(), "taken while held");
    assert!(take(holder, 30, 90).await.unwrap(), "its holder extends it");
    assert!(!take(other, 61, 120).await.unwrap(), "the extension holds");
    assert!(
        store
            .take_lease("another-job", other, t0() + secs(61), t0() + secs(120))
            .await
            .unwrap(),
        "each job has its own lease"
    );
    store.release_lease(JOB, other).await.unwrap();
    assert!(
        !take(other, 62, 120).await.unwrap(),
        "released by a stranger"
    );
    store.release_lease(JOB, holder).await.unwrap();
    assert!(
        take(other, 62, 120).await.unwrap(),
        "released by its holder"
    );
    assert!(take(holder, 120, 180).await.unwrap(), "run out");
}

/// Every grouping's counts, error codes and costs over the seed's days and beyond.
async fn reports<S: ReportStoreUnderTest>(store: &S) -> Vec<String> {
    let mut answers = Vec::new();
    for group_by in [
        UsageGrouping::Day,
        UsageGrouping::Template,
        UsageGrouping::Country,
        UsageGrouping::Status,
        UsageGrouping::ApiKey,
    ] {
        let wide = UsageQuery {
            since: t0() - secs(DAY),
            until: t0() + secs(5 * DAY),
            ..range(group_by)
        };
        let own = UsageQuery {
            api_key: Some("auth".into()),
            ..range(group_by)
        };
        for query in [range(group_by), wide, own] {
            answers.push(format!(
                "{group_by:?}: {:?} {:?} {:?}",
                store.usage(&query).await.unwrap(),
                store.error_codes(&query).await.unwrap(),
                store.costs(&query).await.unwrap(),
            ));
        }
    }
    answers
}

/// Removes every batch of `kind` before `before`, `limit` at a time, checking that no batch is
/// larger.
async fn remove_all<S: ReportStoreUnderTest>(
    store: &S,
    kind: Retained,
    before: chrono::DateTime<chrono::Utc>,
    limit: u32,
) -> Removed {
    let mut total = Removed::default();
    loop {
        let removed = store.remove_expired(kind, before, limit).await.unwrap();
        let rows = match kind {
            Retained::Messages => removed.messages,
            Retained::Verifications => removed.verifications,
            Retained::FraudDecisions => removed.fraud_decisions,
        };
        assert!(rows <= u64::from(limit), "a batch of {rows} over {limit}");
        total.add(removed);
        if rows == 0 {
            return total;
        }
    }
}

pub async fn retention_removes_what_left_the_queue_in_batches_and_the_report_keeps_its_counts<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    seed_costs(&store).await;
    seed_usage(&store).await;
    store
        .record_delivery(
            "SM2",
            DeliveryEvent {
                status: MessageStatus::Delivered,
                error_code: None,
                error_message: None,
                price: None,
                received_at: t0() + secs(2 * 3600),
            },
            None,
        )
        .await
        .unwrap();
    // The seed's oldest queued message, in flight from now on.
    let in_flight = store
        .claim_due(t0() + secs(DAY), 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let before = reports(&store).await;

    let removed = remove_all(&store, Retained::Messages, t0() + secs(30 * DAY), 4).await;

    // 17 priced messages, and the seed's sent and two failed ones; never the three queued
    // ones (one of them with an attempt) nor the one in flight.
    assert_eq!(
        removed,
        Removed {
            messages: 20,
            attempts: 20,
            delivery_events: 1,
            ..Removed::default()
        }
    );
    let left: u64 = store
        .status_counts()
        .await
        .unwrap()
        .iter()
        .map(|count| count.count)
        .sum();
    assert_eq!(left, 4);
    assert_eq!(
        message(&store, in_flight.message.id).await.status,
        MessageStatus::Sending
    );
    assert_eq!(reports(&store).await, before, "the report changed");
    // A run with nothing old enough left removes nothing and changes no figure.
    assert_eq!(
        remove_all(&store, Retained::Messages, t0() + secs(30 * DAY), 4).await,
        Removed::default()
    );
    assert_eq!(reports(&store).await, before);
}

pub async fn retention_removes_old_verifications_with_their_codes_and_decisions<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let old = verification(t0());
    create_verification(&store, &old, 1).await;
    let recent = verification(t0() + secs(2 * DAY));
    create_verification(&store, &recent, 2).await;
    let mut about_old = logged(t0(), Action::Monitor);
    about_old.verification_id = Some(old.id);
    let refused = logged(t0() + secs(60), Action::Block);
    let recent_refusal = logged(t0() + secs(2 * DAY), Action::Block);
    for decision in [&about_old, &refused, &recent_refusal] {
        store.log_decision(decision).await.unwrap();
    }

    let mut removed = Removed::default();
    for kind in Retained::ALL {
        removed.add(remove_all(&store, kind, t0() + secs(DAY), 1).await);
    }

    assert_eq!(
        removed,
        Removed {
            verifications: 1,
            verification_codes: 1,
            fraud_decisions: 2,
            ..Removed::default()
        }
    );
    assert_eq!(VerificationStore::get(&store, old.id).await.unwrap(), None);
    assert!(VerificationStore::get(&store, recent.id)
        .await
        .unwrap()
        .is_some());
    let decisions = store
        .decisions(&crate::DecisionFilter {
            action: None,
            since: None,
            until: None,
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        decisions
            .iter()
            .map(|decision| decision.id)
            .collect::<Vec<_>>(),
        [recent_refusal.id]
    );
}

pub async fn bodies_of_plain_messages_are_emptied_once_old_but_never_while_queued<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let mut finished = Vec::new();
    for offset in 0..3 {
        let new = super::notification(t0() + secs(offset));
        enqueue_new(&store, new.clone()).await;
        let claimed = claim_one(&store, t0() + secs(offset)).await;
        let at = t0() + secs(offset);
        store
            .finish(
                claimed.claim,
                new.id,
                Some(attempt(1, at, AttemptOutcome::Sent)),
                sent(&format!("SM{offset}")),
                at,
            )
            .await
            .unwrap();
        finished.push(new.id);
    }
    let queued = enqueue_new(&store, super::notification(t0() + secs(10))).await;
    let recent: NewMessage = super::notification(t0() + secs(2 * DAY));
    enqueue_new(&store, recent.clone()).await;
    let cutoff = t0() + secs(DAY);

    assert_eq!(store.empty_bodies(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.empty_bodies(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.empty_bodies(cutoff, 2).await.unwrap(), 0);

    for id in finished {
        let emptied = message(&store, id).await;
        assert_eq!(emptied.body, "");
        assert_eq!(emptied.status, MessageStatus::Sent, "only the body goes");
    }
    assert_eq!(message(&store, queued.id).await.body, queued.body);
    assert_eq!(message(&store, recent.id).await.body, recent.body);
}

pub async fn erasing_a_number_removes_its_rows_of_every_api_key_and_keeps_the_report<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let bob = phone("+447700900123");
    // Alice's: a sent notification of `shop`, a code of `auth`, a queued one of `billing`.
    let shop = super::notification(t0());
    enqueue_new(&store, shop.clone()).await;
    let claimed = claim_one(&store, t0()).await;
    store
        .finish(
            claimed.claim,
            shop.id,
            Some(attempt(1, t0(), AttemptOutcome::Sent)),
            sent("SM-shop"),
            t0(),
        )
        .await
        .unwrap();
    let code = verification(t0() + secs(10));
    create_verification(&store, &code, 1).await;
    let billing = NewMessage {
        api_key: "billing".into(),
        ..super::notification(t0() + secs(20))
    };
    enqueue_new(&store, billing).await;
    let mut decision = logged(t0() + secs(10), Action::Monitor);
    decision.to = alice();
    store.log_decision(&decision).await.unwrap();
    let bobs = enqueue_new(
        &store,
        NewMessage {
            to: bob.clone(),
            ..super::notification(t0() + secs(30))
        },
    )
    .await;
    let report = |store: S| async move {
        let query = UsageQuery {
            since: t0() - secs(DAY),
            until: t0() + secs(DAY),
            ..range(UsageGrouping::ApiKey)
        };
        store.usage(&query).await.unwrap()
    };
    let before = report(store.clone()).await;

    assert_eq!(
        store
            .cancel_verifications_to(&alice(), t0() + secs(40))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .find_pending(&alice(), "auth", t0() + secs(41))
            .await
            .unwrap(),
        None
    );
    let erased = store.erase_number(&alice()).await.unwrap();

    assert_eq!(
        erased,
        Removed {
            messages: 3,
            attempts: 1,
            delivery_events: 0,
            verifications: 1,
            verification_codes: 1,
            fraud_decisions: 1,
        }
    );
    assert_eq!(message(&store, bobs.id).await.to, bob, "another number's");
    assert_eq!(VerificationStore::get(&store, code.id).await.unwrap(), None);
    assert_eq!(MessageStore::get(&store, shop.id).await.unwrap(), None);
    assert_eq!(report(store.clone()).await, before, "the report changed");
    assert_eq!(
        store.erase_number(&alice()).await.unwrap(),
        Removed::default(),
        "nothing is left to erase"
    );
}

pub async fn a_message_erased_in_flight_is_not_stored_again_by_its_finish<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let new = super::notification(t0());
    enqueue_new(&store, new.clone()).await;
    let claimed = claim_one(&store, t0()).await;

    let erased = store.erase_number(&alice()).await.unwrap();
    assert_eq!(erased.messages, 1);
    let finished = store
        .finish(
            claimed.claim,
            new.id,
            Some(attempt(1, t0(), AttemptOutcome::Sent)),
            sent("SM-late"),
            t0() + secs(1),
        )
        .await
        .unwrap();

    assert!(
        !finished,
        "the finish of an erased message recorded something"
    );
    assert_eq!(MessageStore::get(&store, new.id).await.unwrap(), None);
    assert!(store
        .claim_due(t0() + secs(3600), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let query = UsageQuery {
        since: t0(),
        until: t0() + secs(DAY),
        ..range(UsageGrouping::Status)
    };
    let counted = store.usage(&query).await.unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].messages, 1, "the erased message still counts");
}
