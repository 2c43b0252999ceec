//! Conformance tests of [`FraudStore`]: the guard's counts, blocks, safe list and decision
//! log behave alike on every store.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use domain::fraud::{
    Action, Block, BlockPeriod, CodeCounts, CodeEvent, Decision, Mode, Policy, Prefix, Prefixes,
    Reason, ReasonCode, SignalKey,
};
use domain::{MessageId, NewMessage, Verification, VerificationId};
use uuid::Uuid;

use super::{code_hash, code_message, phone, t0, verification, StoreUnderTest};
use crate::{DecisionCursor, DecisionFilter, LoggedDecision, SafeEntry, SpendReservation};

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

fn prefix(text: &str) -> Prefix {
    Prefix::parse(text).unwrap()
}

/// The keys of a code to `+447700900123` for the `auth` API key from one address.
fn keys() -> Vec<SignalKey> {
    let to = phone("+447700900123");
    let prefixes = Prefixes::of(&to);
    vec![
        SignalKey::country_of(&to),
        SignalKey::prefix(&prefixes.narrow),
        SignalKey::prefix(&prefixes.wide),
        SignalKey::api_key("auth"),
        SignalKey::client_ip("203.0.113.7"),
    ]
}

async fn counts_by_key<S: StoreUnderTest>(
    store: &S,
    keys: &[SignalKey],
    since: DateTime<Utc>,
) -> HashMap<SignalKey, Vec<CodeCounts>> {
    let mut by_key: HashMap<SignalKey, Vec<CodeCounts>> = HashMap::new();
    for (key, counts) in store.code_counts(keys, since).await.unwrap() {
        by_key.entry(key).or_default().push(counts);
    }
    by_key
}

pub async fn code_events_are_counted_per_key_in_the_hour_the_code_was_asked_for<
    S: StoreUnderTest,
>(
    store: S,
) {
    // t0 is 12:00: two codes in the 11:00 hour, three in the 12:00 one.
    for at in [-3_600, -1, 0, 1_800, 3_599] {
        store
            .count_code(CodeEvent::Sent, &keys(), t0() + TimeDelta::seconds(at))
            .await
            .unwrap();
    }
    // A check and an approval come later but count for the 11:00 code they concern; a code
    // refused counts apart.
    store
        .count_code(CodeEvent::Checked, &keys(), t0() - TimeDelta::seconds(1))
        .await
        .unwrap();
    store
        .count_code(CodeEvent::Approved, &keys(), t0() - TimeDelta::seconds(1))
        .await
        .unwrap();
    store
        .count_code(CodeEvent::Refused, &keys()[..3], t0())
        .await
        .unwrap();
    // Another number's codes are counted under its own keys only.
    let elsewhere = vec![SignalKey::prefix(&prefix("+15551234"))];
    store
        .count_code(CodeEvent::Sent, &elsewhere, t0())
        .await
        .unwrap();

    let by_key = counts_by_key(&store, &keys(), t0() - hours(1)).await;
    let earlier = CodeCounts {
        sent: 2,
        checked: 1,
        approved: 1,
        ..CodeCounts::at(t0() - hours(1))
    };
    for (index, key) in keys().iter().enumerate() {
        let refused = u64::from(index < 3);
        assert_eq!(
            by_key[key],
            [
                earlier,
                CodeCounts {
                    sent: 3,
                    refused,
                    ..CodeCounts::at(t0())
                }
            ],
            "{key}"
        );
    }
    assert_eq!(by_key.len(), keys().len());
    // Only the hours from `since`.
    let recent = counts_by_key(&store, &keys()[..1], t0()).await;
    assert_eq!(recent[&keys()[0]].len(), 1);
    assert!(store
        .code_counts(&[SignalKey::api_key("nobody")], t0() - hours(1))
        .await
        .unwrap()
        .is_empty());
}

pub async fn concurrent_code_counts_lose_none<S: StoreUnderTest>(store: S) {
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let event = if n % 4 == 0 {
                    CodeEvent::Checked
                } else {
                    CodeEvent::Sent
                };
                store.count_code(event, &keys(), t0()).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let by_key = counts_by_key(&store, &keys(), t0()).await;
    for key in keys() {
        assert_eq!(
            by_key[&key],
            [CodeCounts {
                sent: 30,
                checked: 10,
                ..CodeCounts::at(t0())
            }],
            "{key}"
        );
    }
}

pub async fn counts_older_than_the_baseline_are_forgotten<S: StoreUnderTest>(store: S) {
    for hours_ago in [0, 1, 24 * 15] {
        store
            .count_code(CodeEvent::Sent, &keys()[..1], t0() - hours(hours_ago))
            .await
            .unwrap();
    }
    assert_eq!(store.forget_counts(t0() - hours(24 * 14)).await.unwrap(), 1);
    let left = counts_by_key(&store, &keys()[..1], t0() - hours(24 * 30)).await;
    assert_eq!(
        left[&keys()[0]]
            .iter()
            .map(|counts| counts.hour)
            .collect::<Vec<_>>(),
        [t0() - hours(1), t0()]
    );
}

fn guard_block(prefix_text: &str, at: DateTime<Utc>) -> Block {
    Block::new(
        prefix(prefix_text),
        vec![
            Reason::new(ReasonCode::PrefixLowConversion, "0 of 40 codes checked"),
            Reason::new(ReasonCode::PrefixSurge, "40 codes in the last hour"),
        ],
        40,
        at,
        BlockPeriod::default(),
    )
}

pub async fn a_block_is_placed_once_renewed_while_in_force_and_heals<S: StoreUnderTest>(store: S) {
    let block = guard_block("+447700900", t0());
    assert!(store.place_block(&block).await.unwrap());
    // Another instance finding the same traffic a moment later places nothing new.
    let again = guard_block("+447700900", t0() + TimeDelta::seconds(1));
    assert!(!store.place_block(&again).await.unwrap());
    assert_eq!(
        store.blocks(t0()).await.unwrap(),
        std::slice::from_ref(&block)
    );

    let renewed = block
        .renewed(25, t0() + hours(2), BlockPeriod::default())
        .unwrap();
    assert!(store.renew_block(&renewed).await.unwrap());
    assert_eq!(
        store.blocks(t0() + hours(13)).await.unwrap(),
        std::slice::from_ref(&renewed)
    );

    // Healed at its expiry: no longer listed, no longer renewable, placeable afresh.
    let healed_at = t0() + hours(14);
    assert!(store.blocks(healed_at).await.unwrap().is_empty());
    let late = Block {
        renewed_at: healed_at,
        expires_at: Some(healed_at + hours(12)),
        ..renewed
    };
    assert!(!store.renew_block(&late).await.unwrap());
    let fresh = guard_block("+447700900", healed_at);
    assert!(store.place_block(&fresh).await.unwrap());
    assert_eq!(store.blocks(healed_at).await.unwrap(), [fresh]);
}

pub async fn an_admins_block_is_never_overridden_by_the_guard_and_unblock_lifts_it<
    S: StoreUnderTest,
>(
    store: S,
) {
    let guard = guard_block("+447700900", t0());
    assert!(store.place_block(&guard).await.unwrap());
    // An admin's block replaces the guard's, in force until lifted.
    let manual = Block::manual(
        prefix("+447700900"),
        "fraud report #12",
        t0() + hours(1),
        None,
    );
    assert!(store.place_block(&manual).await.unwrap());
    let other = Block::manual(
        prefix("+44"),
        "all of GB for a day",
        t0(),
        Some(t0() + hours(24)),
    );
    assert!(store.place_block(&other).await.unwrap());
    assert_eq!(
        store.blocks(t0() + hours(23)).await.unwrap(),
        [other.clone(), manual.clone()]
    );
    // The guard neither replaces nor renews it.
    assert!(!store
        .place_block(&guard_block("+447700900", t0() + hours(2)))
        .await
        .unwrap());
    let renewal = Block {
        renewed_at: t0() + hours(2),
        expires_at: Some(t0() + hours(14)),
        ..manual.clone()
    };
    assert!(!store.renew_block(&renewal).await.unwrap());

    assert!(store
        .unblock(&prefix("+447700900"), t0() + hours(3))
        .await
        .unwrap());
    assert!(!store
        .unblock(&prefix("+447700900"), t0() + hours(3))
        .await
        .unwrap());
    assert!(!store.unblock(&prefix("+4477"), t0()).await.unwrap());
    assert_eq!(store.blocks(t0() + hours(3)).await.unwrap(), [other]);
    // An instance that still saw a guard's block before its lift cannot bring it back.
    let lifted = guard_block("+33612345", t0());
    assert!(store.place_block(&lifted).await.unwrap());
    assert!(store
        .unblock(&lifted.prefix, t0() + hours(3))
        .await
        .unwrap());
    let stale = lifted
        .renewed(30, t0() + hours(4), BlockPeriod::default())
        .unwrap();
    assert!(!store.renew_block(&stale).await.unwrap());
    assert_eq!(store.blocks(t0() + hours(4)).await.unwrap().len(), 1);
}

pub async fn the_safe_list_adds_replaces_and_removes_entries<S: StoreUnderTest>(store: S) {
    let number = SafeEntry {
        prefix: prefix("+15551234567"),
        note: Some("QA phone".into()),
        added_at: t0(),
    };
    let range = SafeEntry {
        prefix: prefix("+4477009"),
        note: None,
        added_at: t0(),
    };
    store.add_safe(&number).await.unwrap();
    store.add_safe(&range).await.unwrap();
    let renamed = SafeEntry {
        note: Some("partner range".into()),
        added_at: t0() + hours(1),
        ..range.clone()
    };
    store.add_safe(&renamed).await.unwrap();
    assert_eq!(
        store.safe_list().await.unwrap(),
        [number.clone(), renamed.clone()]
    );
    assert!(store.remove_safe(&number.prefix).await.unwrap());
    assert!(!store.remove_safe(&number.prefix).await.unwrap());
    assert_eq!(store.safe_list().await.unwrap(), [renamed]);
}

pub(crate) fn logged(at: DateTime<Utc>, action: Action) -> LoggedDecision {
    let reasons = match action {
        Action::Allow => Vec::new(),
        _ => vec![Reason::new(
            ReasonCode::LineType,
            "premium_rate numbers are refused",
        )],
    };
    LoggedDecision {
        id: Uuid::new_v4(),
        at,
        to: phone("+449012345678"),
        api_key: "auth".into(),
        client_ip: (action == Action::Block).then(|| "203.0.113.7".to_owned()),
        user_id: (action != Action::Allow).then(|| "user-4711".to_owned()),
        trusted: action == Action::Monitor,
        verification_id: (action != Action::Block).then(VerificationId::generate),
        decision: Decision { action, reasons },
    }
}

pub async fn decisions_are_listed_newest_first_with_filters_and_cursor<S: StoreUnderTest>(
    store: S,
) {
    let entries = [
        logged(t0(), Action::Block),
        logged(t0() + hours(1), Action::Monitor),
        logged(t0() + hours(2), Action::Block),
        logged(t0() + hours(3), Action::Allow),
    ];
    for entry in &entries {
        store.log_decision(entry).await.unwrap();
    }
    let all = DecisionFilter {
        action: None,
        since: None,
        until: None,
        before: None,
        limit: 10,
    };
    let newest_first: Vec<LoggedDecision> = entries.iter().rev().cloned().collect();
    assert_eq!(store.decisions(&all).await.unwrap(), newest_first);

    let blocks = DecisionFilter {
        action: Some(Action::Block),
        ..all.clone()
    };
    assert_eq!(
        store.decisions(&blocks).await.unwrap(),
        [entries[2].clone(), entries[0].clone()]
    );
    let window = DecisionFilter {
        since: Some(t0() + hours(1)),
        until: Some(t0() + hours(3)),
        ..all.clone()
    };
    assert_eq!(
        store.decisions(&window).await.unwrap(),
        [entries[2].clone(), entries[1].clone()]
    );
    let first_page = DecisionFilter {
        limit: 2,
        ..all.clone()
    };
    let page = store.decisions(&first_page).await.unwrap();
    assert_eq!(page, newest_first[..2]);
    let last = page.last().unwrap();
    let next = DecisionFilter {
        before: Some(DecisionCursor {
            at: last.at,
            id: last.id,
        }),
        ..first_page
    };
    assert_eq!(store.decisions(&next).await.unwrap(), newest_first[2..]);
}

pub async fn policy_modes_set_at_run_time_read_back_and_replace<S: StoreUnderTest>(store: S) {
    assert!(store.policy_modes().await.unwrap().is_empty());
    store
        .set_policy_mode(Policy::PrefixSurge, Mode::Monitor, t0())
        .await
        .unwrap();
    store
        .set_policy_mode(Policy::CountrySurge, Mode::Off, t0())
        .await
        .unwrap();
    store
        .set_policy_mode(Policy::PrefixSurge, Mode::Enforce, t0() + hours(1))
        .await
        .unwrap();
    let mut modes = store.policy_modes().await.unwrap();
    modes.sort_by_key(|(policy, _)| *policy);
    assert_eq!(
        modes,
        [
            (Policy::PrefixSurge, Mode::Enforce),
            (Policy::CountrySurge, Mode::Off)
        ]
    );
}

pub async fn a_verification_keeps_the_risk_it_was_started_with<S: StoreUnderTest>(store: S) {
    let risk = Decision {
        action: Action::Monitor,
        reasons: vec![Reason::new(
            ReasonCode::PrefixSurge,
            "+447700900: 60 codes in the last hour",
        )],
    };
    let judged = Verification {
        risk: Some(risk.clone()),
        ..verification(t0())
    };
    let unjudged = verification(t0() + hours(1));
    for verification in [&judged, &unjudged] {
        store
            .create(
                verification,
                code_hash(1),
                code_message(verification, verification.created_at),
                None,
            )
            .await
            .unwrap();
    }
    let judged_read = crate::VerificationStore::get(&store, judged.id).await;
    assert_eq!(judged_read.unwrap().unwrap().risk, Some(risk));
    let unjudged_read = crate::VerificationStore::get(&store, unjudged.id).await;
    assert_eq!(unjudged_read.unwrap().unwrap().risk, None);
}

pub async fn a_verification_s_finding_joins_the_decision_log_in_its_own_write<S: StoreUnderTest>(
    store: S,
) {
    let risk = Decision {
        action: Action::Monitor,
        reasons: vec![
            Reason::new(
                ReasonCode::PrefixSurge,
                "+447700900: 60 codes in the last hour",
            ),
            Reason::new(ReasonCode::CountrySurge, "GB: 900 codes in the last hour"),
        ],
    };
    let judged = Verification {
        risk: Some(risk.clone()),
        ..verification(t0())
    };
    let finding = LoggedDecision {
        id: Uuid::new_v4(),
        at: judged.created_at,
        to: judged.to.clone(),
        api_key: judged.api_key.clone(),
        client_ip: Some("203.0.113.7".to_owned()),
        user_id: Some("user-4711".to_owned()),
        trusted: false,
        verification_id: Some(judged.id),
        decision: risk.clone(),
    };
    let unjudged = verification(t0() + hours(1));
    // Written together, as a burst of requests is.
    let (judged_write, unjudged_write) = tokio::join!(
        store.create(
            &judged,
            code_hash(1),
            code_message(&judged, judged.created_at),
            Some(finding.clone()),
        ),
        store.create(
            &unjudged,
            code_hash(2),
            code_message(&unjudged, unjudged.created_at),
            None,
        )
    );
    let judged_message = judged_write.unwrap();
    unjudged_write.unwrap();
    // A verification that is not stored leaves no finding behind.
    let doomed = Verification {
        risk: Some(risk.clone()),
        ..verification(t0() + hours(2))
    };
    let clashing = NewMessage {
        id: judged_message.id,
        ..code_message(&doomed, doomed.created_at)
    };
    let lost = LoggedDecision {
        id: Uuid::new_v4(),
        verification_id: Some(doomed.id),
        ..finding.clone()
    };
    assert!(store
        .create(&doomed, code_hash(3), clashing, Some(lost))
        .await
        .is_err());
    let all = DecisionFilter {
        action: None,
        since: None,
        until: None,
        before: None,
        limit: 10,
    };
    assert_eq!(store.decisions(&all).await.unwrap(), [finding]);
}

fn money(text: &str) -> domain::Amount {
    text.parse().unwrap()
}

fn day(text: &str) -> chrono::NaiveDate {
    text.parse().unwrap()
}

pub async fn spend_reservations_stop_at_the_cap_and_name_the_scope<S: StoreUnderTest>(store: S) {
    use domain::budget::{SpendCap, SpendScope};
    let caps = [
        SpendCap {
            scope: SpendScope::Total,
            cap: money("1"),
        },
        SpendCap {
            scope: SpendScope::Country("GB".to_owned()),
            cap: money("0.5"),
        },
    ];
    let today = day("2026-12-05");
    for spent in ["0.2", "0.4"] {
        assert_eq!(
            store
                .reserve_spend(today, &caps, money("0.2"), MessageId::generate())
                .await
                .unwrap(),
            SpendReservation::Reserved(vec![money(spent), money(spent)])
        );
    }
    // GB has 0.10 left: nothing is reserved, not even under the total.
    assert_eq!(
        store
            .reserve_spend(today, &caps, money("0.2"), MessageId::generate())
            .await
            .unwrap(),
        SpendReservation::Exhausted {
            scope: SpendScope::Country("GB".to_owned()),
            spent: money("0.4"),
        }
    );
    assert_eq!(
        store
            .reserve_spend(today, &caps[..1], money("0.6"), MessageId::generate())
            .await
            .unwrap(),
        SpendReservation::Reserved(vec![money("1")])
    );
    // A send larger than a whole budget never passes it, even on a day without spend.
    assert!(matches!(
        store
            .reserve_spend(
                day("2026-12-06"),
                &caps,
                money("0.51"),
                MessageId::generate()
            )
            .await
            .unwrap(),
        SpendReservation::Exhausted { .. }
    ));
    // The next UTC day starts again.
    assert_eq!(
        store
            .reserve_spend(
                day("2026-12-06"),
                &caps,
                money("0.5"),
                MessageId::generate()
            )
            .await
            .unwrap(),
        SpendReservation::Reserved(vec![money("0.5"), money("0.5")])
    );
}

pub async fn concurrent_spend_reservations_never_pass_the_cap<S: StoreUnderTest>(store: S) {
    use domain::budget::{SpendCap, SpendScope};
    let caps = vec![
        SpendCap {
            scope: SpendScope::Total,
            cap: money("1"),
        },
        SpendCap {
            scope: SpendScope::ApiKey("auth".to_owned()),
            cap: money("5"),
        },
    ];
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (store, caps) = (store.clone(), caps.clone());
            tokio::spawn(async move {
                store
                    .reserve_spend(
                        day("2026-12-05"),
                        &caps,
                        money("0.1"),
                        MessageId::generate(),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut reserved = Vec::new();
    for task in tasks {
        if let SpendReservation::Reserved(after) = task.await.unwrap() {
            reserved.push(after[0]);
        }
    }
    reserved.sort();
    let expected: Vec<_> = (1..=10)
        .map(|tenths| domain::Amount::from_units(tenths * 10_000_000))
        .collect();
    assert_eq!(reserved, expected, "exactly ten sends of 0.10 fit in 1.00");
}

/// A cap on the day's total spend only.
fn total_cap(cap: &str) -> Vec<domain::budget::SpendCap> {
    vec![domain::budget::SpendCap {
        scope: domain::budget::SpendScope::Total,
        cap: money(cap),
    }]
}

/// Reserves `amount` for `message` under `caps` on 2026-12-05.
async fn reserve<S: StoreUnderTest>(
    store: &S,
    caps: &[domain::budget::SpendCap],
    amount: &str,
    message: MessageId,
) -> SpendReservation {
    store
        .reserve_spend(day("2026-12-05"), caps, money(amount), message)
        .await
        .unwrap()
}

pub async fn a_reservation_is_given_back_when_its_message_ends_unsent_and_kept_when_sent<
    S: StoreUnderTest,
>(
    store: S,
) {
    use super::{attempt, claim_one, enqueue_new, sent};
    use crate::DispatchOutcome;
    use domain::AttemptOutcome;

    let caps = total_cap("1");
    // Four stored messages each reserve 0.10: one fails for good before the provider takes
    // it, one expires unsent, one is sent, one is still queued.
    let mut ids = Vec::new();
    for outcome in [
        Some(DispatchOutcome::Failed {
            error_code: Some("21211".into()),
            error_message: "invalid 'To' phone number".into(),
        }),
        Some(DispatchOutcome::Expired),
        Some(sent("SM00000000000000000000000000000001")),
        None,
    ] {
        let queued = enqueue_new(&store, super::notification(t0())).await;
        assert!(matches!(
            reserve(&store, &caps, "0.1", queued.id).await,
            SpendReservation::Reserved(_)
        ));
        ids.push(queued.id);
        if let Some(outcome) = outcome {
            let claimed = claim_one(&store, t0()).await;
            assert_eq!(claimed.message.id, queued.id);
            let tried = matches!(outcome, DispatchOutcome::Failed { .. })
                .then(|| attempt(1, t0(), AttemptOutcome::PermanentError));
            assert!(store
                .finish(claimed.claim, queued.id, tried, outcome, t0())
                .await
                .unwrap());
        }
    }
    // A fifth reservation whose message was never stored.
    let never_stored = MessageId::generate();
    reserve(&store, &caps, "0.1", never_stored).await;

    // The failed and the expired message give theirs back: 0.50 spent becomes 0.30.
    assert_eq!(store.settle_spend().await.unwrap(), 2);
    assert_eq!(
        reserve(&store, &caps, "0.1", MessageId::generate()).await,
        SpendReservation::Reserved(vec![money("0.4")])
    );
    // Settled once: a second settling gives nothing back, the queued message keeps its own.
    assert_eq!(store.settle_spend().await.unwrap(), 0);
    // The message never stored gives its reservation back when asked to, once.
    assert!(store.release_spend(never_stored).await.unwrap());
    assert!(!store.release_spend(never_stored).await.unwrap());
    assert_eq!(
        reserve(&store, &caps, "0.1", MessageId::generate()).await,
        SpendReservation::Reserved(vec![money("0.4")])
    );
    // The queued message, once sent, keeps its spend.
    let claimed = claim_one(&store, t0()).await;
    assert_eq!(claimed.message.id, ids[3]);
    assert!(store
        .finish(
            claimed.claim,
            ids[3],
            None,
            sent("SM00000000000000000000000000000002"),
            t0()
        )
        .await
        .unwrap());
    assert_eq!(store.settle_spend().await.unwrap(), 0);
    assert_eq!(
        reserve(&store, &caps, "0.6", MessageId::generate()).await,
        SpendReservation::Reserved(vec![money("1")])
    );
}

/// Spend never passes a cap by more than the sends in flight, whatever is given back
/// meanwhile: reservations and give-backs race from many tasks at once.
pub async fn concurrent_reservations_and_give_backs_never_pass_the_cap<S: StoreUnderTest>(
    store: S,
) {
    let caps = total_cap("1");
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let (store, caps) = (store.clone(), caps.clone());
            tokio::spawn(async move {
                let message = MessageId::generate();
                let reserved = reserve(&store, &caps, "0.1", message).await;
                let given_back = match &reserved {
                    SpendReservation::Reserved(after) => {
                        assert!(after[0] <= money("1"), "spent {} of 1", after[0]);
                        // Every third reservation's message is never stored.
                        n % 3 == 0 && store.release_spend(message).await.unwrap()
                    }
                    SpendReservation::Exhausted { .. } => false,
                };
                (
                    matches!(reserved, SpendReservation::Reserved(_)),
                    given_back,
                )
            })
        })
        .collect();
    let (mut kept, mut given_back) = (0_i128, 0);
    for task in tasks {
        let (reserved, released) = task.await.unwrap();
        if reserved && !released {
            kept += 1;
        }
        if released {
            given_back += 1;
        }
    }
    assert!(given_back > 0, "no reservation was given back");
    assert!(kept <= 10, "{kept} sends of 0.10 kept under a cap of 1.00");
    // The day's spend is exactly what was kept: the rest of the cap fits, not a unit more.
    let rest = domain::Amount::from_units((10 - kept) * 10_000_000);
    if rest > domain::Amount::ZERO {
        assert_eq!(
            store
                .reserve_spend(day("2026-12-05"), &caps, rest, MessageId::generate())
                .await
                .unwrap(),
            SpendReservation::Reserved(vec![money("1")])
        );
    }
    assert!(matches!(
        reserve(&store, &caps, "0.00000001", MessageId::generate()).await,
        SpendReservation::Exhausted { .. }
    ));
}
