//! Conformance of [`WorkflowStore`]: a workflow's next step is due after its delay or at once
//! when its step's message fails or is not delivered, is claimed by one worker at a time
//! (again once a dead worker's lease ends), and is taken once; a verification's attempts show
//! each code's message and which code approved.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use domain::{
    Attempt, AttemptOutcome, Channel, DeliveryEvent, FallbackReason, Message, MessageStatus,
    Verification, VerificationId, VerificationStatus, WorkflowPlan,
};

use super::{
    claim_one, code_hash, code_message, secs, stored_verification, t0, verification,
    StoreUnderTest, LEASE,
};
use crate::{DispatchOutcome, StepTaken};

/// A verification of the `auth` key started at `at` with an `sms` then `voice` workflow,
/// 60 s apart: the workflow stored first, as the use case does.
async fn sms_then_voice<S: StoreUnderTest>(
    store: &S,
    at: DateTime<Utc>,
) -> (Verification, Message) {
    let started = verification(at);
    let plan = WorkflowPlan::new(vec![Channel::Sms, Channel::Voice], 60).unwrap();
    let first = code_message(&started, at);
    store
        .start_workflow(&plan.start(started.id, first.id, domain::StepRequest::default(), at))
        .await
        .unwrap();
    let queued = store
        .create(&started, code_hash(1), first, None)
        .await
        .unwrap();
    (started, queued)
}

/// The step from `from` to `from + 1` on voice, taken at `now`.
fn voice_step(id: VerificationId, from: u32, now: DateTime<Utc>) -> StepTaken {
    StepTaken {
        verification_id: id,
        from,
        to: from + 1,
        next_step_at: None,
        now,
    }
}

fn voice_message(verification: &Verification, at: DateTime<Utc>) -> domain::NewMessage {
    domain::NewMessage {
        channel: Channel::Voice,
        segments: 0,
        ..code_message(verification, at)
    }
}

/// The step's message sent through Twilio as `sid` at `at`.
async fn send<S: StoreUnderTest>(store: &S, sid: &str, at: DateTime<Utc>) {
    let claimed = claim_one(store, at).await;
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
        provider_sid: sid.into(),
        segments: None,
        price: None,
    };
    assert!(store
        .finish(
            claimed.claim,
            claimed.message.id,
            Some(attempt),
            outcome,
            at
        )
        .await
        .unwrap());
}

fn receipt(status: MessageStatus, at: DateTime<Utc>) -> DeliveryEvent {
    DeliveryEvent {
        status,
        error_code: (status == MessageStatus::Undelivered).then(|| "30003".into()),
        error_message: None,
        price: None,
        received_at: at,
    }
}

pub async fn a_workflow_step_is_due_after_its_delay_and_held_by_one_claim_until_its_lease_ends<
    S: StoreUnderTest,
>(
    store: S,
) {
    let (started, _) = sms_then_voice(&store, t0()).await;
    let stored = store.workflow(started.id).await.unwrap().unwrap();
    assert_eq!(stored.plan.channels(), [Channel::Sms, Channel::Voice]);
    assert_eq!(stored.next_step_at, Some(t0() + secs(60)));

    assert!(store
        .claim_due_steps(t0() + secs(59), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let due = store
        .claim_due_steps(t0() + secs(60), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].reason, FallbackReason::Timeout);
    assert_eq!(due[0].workflow.step, 0);
    assert_eq!(due[0].verification.id, started.id);
    // Held while its worker has it; a dead worker's claim lapses with its lease.
    assert!(store
        .claim_due_steps(t0() + secs(61), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_due_steps(
            t0() + secs(60) + chrono::TimeDelta::from_std(LEASE).unwrap(),
            10,
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
}

pub async fn an_undelivered_or_failed_step_makes_the_next_step_due_at_once<S: StoreUnderTest>(
    store: S,
) {
    let (started, _) = sms_then_voice(&store, t0()).await;
    send(&store, "SM00000000000000000000000000000001", t0() + secs(1)).await;
    // Sent, not yet reported: only the delay makes it due.
    assert!(store
        .claim_due_steps(t0() + secs(2), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    store
        .record_delivery(
            "SM00000000000000000000000000000001",
            receipt(MessageStatus::Undelivered, t0() + secs(3)),
            None,
        )
        .await
        .unwrap();
    let due = store
        .claim_due_steps(t0() + secs(4), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].workflow.verification_id, started.id);
    assert_eq!(due[0].reason, FallbackReason::Undelivered);
}

pub async fn a_step_is_taken_once_counts_a_send_and_ends_the_workflow_after_the_last<
    S: StoreUnderTest,
>(
    store: S,
) {
    let (started, _) = sms_then_voice(&store, t0()).await;
    let now = t0() + secs(60);
    let (verification, queued) = store
        .take_step(
            &voice_step(started.id, 0, now),
            code_hash(2),
            voice_message(&started, now),
            None,
        )
        .await
        .unwrap()
        .expect("the step is taken");
    assert_eq!(verification.send_count, 2);
    assert_eq!(verification.channel, Channel::Voice);
    assert_eq!(verification.last_sent_at, now);
    assert_eq!(queued.channel, Channel::Voice);
    assert_eq!(queued.status, MessageStatus::Queued);

    // The same claim again (a worker whose lease lapsed): nothing stored.
    assert!(store
        .take_step(
            &voice_step(started.id, 0, now),
            code_hash(3),
            voice_message(&started, now),
            None,
        )
        .await
        .unwrap()
        .is_none());
    let workflow = store.workflow(started.id).await.unwrap().unwrap();
    assert_eq!(workflow.step, 1);
    assert_eq!(workflow.step_message_id, Some(queued.id));
    assert_eq!(workflow.next_step_at, None);
    assert!(store
        .claim_due_steps(now + secs(600), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let (_, hashes) = store
        .count_check(started.id, "auth", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hashes.len(),
        2,
        "each step has its own code; the first stays valid"
    );
}

pub async fn no_step_is_taken_once_the_verification_ended_or_after_a_stop<S: StoreUnderTest>(
    store: S,
) {
    let (approved, _) = sms_then_voice(&store, t0()).await;
    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(5))
        .await
        .unwrap());
    let now = t0() + secs(60);
    assert!(store
        .take_step(
            &voice_step(approved.id, 0, now),
            code_hash(2),
            voice_message(&approved, now),
            None,
        )
        .await
        .unwrap()
        .is_none());
    assert_eq!(stored_verification(&store, approved.id).await.send_count, 1);

    let (stopped, _) = sms_then_voice(&store, t0() + secs(1)).await;
    assert!(store
        .stop_workflow(stopped.id, 0, "too many codes sent to this number")
        .await
        .unwrap());
    assert!(!store.stop_workflow(stopped.id, 0, "again").await.unwrap());
    let workflow = store.workflow(stopped.id).await.unwrap().unwrap();
    assert_eq!(workflow.next_step_at, None);
    assert_eq!(
        workflow.stopped_reason.as_deref(),
        Some("too many codes sent to this number")
    );
    // Only the approved one is left to claim (and then stop): the stopped one never is.
    let due = store.claim_due_steps(now, 10, LEASE).await.unwrap();
    let claimed: Vec<_> = due.iter().map(|due| due.verification.id).collect();
    assert_eq!(claimed, [approved.id]);
    assert_eq!(due[0].verification.status, VerificationStatus::Approved);
}

pub async fn concurrent_step_claims_never_share_a_workflow<S: StoreUnderTest>(store: S) {
    let mut started = Vec::new();
    for n in 0..12 {
        let phone = super::phone(&format!("+1555123{:04}", 4500 + u32::from(n)));
        let plan = WorkflowPlan::new(vec![Channel::Sms, Channel::Voice], 60).unwrap();
        let verification = Verification {
            to: phone,
            ..verification(t0())
        };
        let first = code_message(&verification, t0());
        store
            .start_workflow(&plan.start(
                verification.id,
                first.id,
                domain::StepRequest::default(),
                t0(),
            ))
            .await
            .unwrap();
        store
            .create(&verification, code_hash(n), first, None)
            .await
            .unwrap();
        started.push(verification.id);
    }
    let now = t0() + secs(61);
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due_steps(now, 5, LEASE).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(
            claimer
                .await
                .unwrap()
                .into_iter()
                .map(|due| due.verification.id),
        );
    }
    let distinct: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "a workflow claimed twice: {claimed:?}"
    );
    assert_eq!(distinct, started.iter().copied().collect::<HashSet<_>>());

    // Workers racing to take one workflow's step: exactly one takes it.
    let id = started[0];
    let one = stored_verification(&store, id).await;
    let takers: Vec<_> = (0..5u8)
        .map(|n| {
            let store = store.clone();
            let message = voice_message(&one, now);
            tokio::spawn(async move {
                store
                    .take_step(&voice_step(id, 0, now), code_hash(100 + n), message, None)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut taken = 0;
    for taker in takers {
        if taker.await.unwrap() {
            taken += 1;
        }
    }
    assert_eq!(taken, 1);
    assert_eq!(stored_verification(&store, id).await.send_count, 2);
}

pub async fn attempts_show_each_codes_channel_delivery_and_the_one_that_approved<
    S: StoreUnderTest,
>(
    store: S,
) {
    let (started, first) = sms_then_voice(&store, t0()).await;
    send(&store, "SM00000000000000000000000000000002", t0() + secs(1)).await;
    store
        .record_delivery(
            "SM00000000000000000000000000000002",
            receipt(MessageStatus::Delivered, t0() + secs(4)),
            None,
        )
        .await
        .unwrap();
    let now = t0() + secs(60);
    let (_, call) = store
        .take_step(
            &voice_step(started.id, 0, now),
            code_hash(2),
            voice_message(&started, now),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .record_approval(started.id, &code_hash(2), now + secs(20))
        .await
        .unwrap();

    let attempts = store.verification_attempts(started.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].message_id, first.id);
    assert_eq!(attempts[0].channel, Channel::Sms);
    assert_eq!(attempts[0].provider.as_deref(), Some("twilio"));
    assert_eq!(attempts[0].status, MessageStatus::Delivered);
    assert_eq!(attempts[0].sent_at, Some(t0() + secs(1)));
    assert_eq!(attempts[0].delivered_at, Some(t0() + secs(4)));
    assert!(!attempts[0].approved);
    assert_eq!(attempts[1].message_id, call.id);
    assert_eq!(attempts[1].channel, Channel::Voice);
    assert_eq!(attempts[1].status, MessageStatus::Queued);
    assert_eq!(attempts[1].sent_at, None);
    assert!(attempts[1].approved);

    // A resend the client asked for on voice moves the workflow to that step and waits anew.
    let (other, _) = sms_then_voice(&store, t0() + secs(2)).await;
    let resent = voice_message(&other, t0() + secs(40));
    store
        .add_code(
            other.id,
            code_hash(9),
            resent.clone(),
            t0() + secs(40),
            t0() + secs(10),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .follow_resend(other.id, 1, resent.id, None)
        .await
        .unwrap();
    let followed = store.workflow(other.id).await.unwrap().unwrap();
    assert_eq!(followed.step, 1);
    assert_eq!(followed.step_message_id, Some(resent.id));
    assert_eq!(followed.next_step_at, None);
    assert_eq!(
        stored_verification(&store, other.id).await.channel,
        Channel::Voice,
        "a verification's channel is its newest code's"
    );
}
