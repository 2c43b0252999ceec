//! Fallback workflows through the use cases, on SQLite with a clock the test moves: a step
//! after the delay or at once after an undelivered receipt, each with its own code, none once
//! the verification ended or a limit refused it, and a client's "call me instead".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters_sqlite::SqliteStore;
use app::usecases::channels::OfferedChannels;
use app::usecases::codes::CodeHasher;
use app::usecases::guards::{GuardConfig, SendLimit};
use app::usecases::verify::{StartError, StartRequest, Started};
use app::usecases::StorePorts;
use app::Services;
use chrono::TimeDelta;
use domain::{
    Channel, CodeLength, DeliveryEvent, MessageStatus, PhoneNumber, VerificationCode,
    VerificationPolicy, VerificationStatus, WorkflowPlan,
};
use ports::{Clock, CodeGenerator, DispatchOutcome, MessageStore, WorkflowStore};
use secrecy::SecretString;

use crate::ManualClock;

const LEASE: Duration = Duration::from_secs(30);

/// Hands out the codes the test chose, in order.
struct ScriptedCodes(Mutex<VecDeque<&'static str>>);

impl CodeGenerator for ScriptedCodes {
    fn generate(&self, _length: CodeLength) -> VerificationCode {
        let next = self.0.lock().unwrap().pop_front().expect("a scripted code");
        VerificationCode::parse(next).unwrap()
    }
}

struct Fixture {
    services: Services,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
}

async fn fixture_with(channels: OfferedChannels, guards: GuardConfig) -> Fixture {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    let services = Services::builder(
        StorePorts::of(store.clone()),
        Arc::new(template::Templates::built_in().unwrap()),
        CodeHasher::new(SecretString::from("p".repeat(32))),
    )
    .clock(clock.clone())
    .code_generator(Arc::new(ScriptedCodes(Mutex::new(
        ["111111", "222222", "333333"].into_iter().collect(),
    ))))
    .verification_policy(VerificationPolicy::default())
    .channels(channels)
    .guards(guards)
    .build();
    Fixture {
        services,
        store,
        clock,
    }
}

fn texts_and_calls() -> OfferedChannels {
    OfferedChannels {
        sms: true,
        whatsapp: false,
        voice: true,
    }
}

async fn fixture() -> Fixture {
    fixture_with(texts_and_calls(), GuardConfig::default()).await
}

fn sms_then_voice() -> StartRequest {
    StartRequest {
        to: PhoneNumber::parse("+15551234567").unwrap(),
        channel: Channel::Sms,
        locale: None,
        code_length: None,
        app_hash: None,
        client: Default::default(),
        brand: None,
        workflow: Some(WorkflowPlan::new(vec![Channel::Sms, Channel::Voice], 60).unwrap()),
        transaction: None,
    }
}

fn code(text: &str) -> VerificationCode {
    VerificationCode::parse(text).unwrap()
}

async fn start(fixture: &Fixture) -> Started {
    fixture
        .services
        .start_verification("auth", sms_then_voice())
        .await
        .unwrap()
}

async fn run_steps(fixture: &Fixture) -> usize {
    fixture.services.run_due_steps(10, LEASE).await.unwrap()
}

async fn channels_sent(fixture: &Fixture, started: &Started) -> Vec<Channel> {
    fixture
        .services
        .verification_attempts(started.verification.id)
        .await
        .unwrap()
        .iter()
        .map(|attempt| attempt.channel)
        .collect()
}

#[tokio::test]
async fn no_approval_within_the_delay_calls_with_a_new_code_and_the_first_code_still_approves() {
    let fixture = fixture().await;
    let started = start(&fixture).await;
    assert_eq!(started.message.channel, Channel::Sms);

    fixture.clock.advance(TimeDelta::seconds(59));
    assert_eq!(run_steps(&fixture).await, 0, "not due before its delay");
    fixture.clock.advance(TimeDelta::seconds(1));
    assert_eq!(run_steps(&fixture).await, 1);
    assert_eq!(
        channels_sent(&fixture, &started).await,
        [Channel::Sms, Channel::Voice]
    );
    let verification = fixture
        .services
        .verification("auth", started.verification.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verification.send_count, 2);
    assert_eq!(verification.channel, Channel::Voice);
    // The last step: nothing follows it.
    fixture.clock.advance(TimeDelta::seconds(120));
    assert_eq!(run_steps(&fixture).await, 0);

    let outcome = fixture
        .services
        .check_verification("auth", started.verification.id, &code("111111"))
        .await
        .unwrap();
    assert_eq!(outcome.status, VerificationStatus::Approved);
    let attempts = fixture
        .services
        .verification_attempts(started.verification.id)
        .await
        .unwrap();
    let approved: Vec<bool> = attempts.iter().map(|attempt| attempt.approved).collect();
    assert_eq!(approved, [true, false], "the SMS's code approved");
}

#[tokio::test]
async fn an_undelivered_sms_calls_at_once_without_waiting_for_the_delay() {
    let fixture = fixture().await;
    let started = start(&fixture).await;
    let now = fixture.clock.now();
    let claimed = fixture.store.claim_due(now, 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let sent = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: "SM00000000000000000000000000000001".into(),
        segments: Some(1),
        price: None,
    };
    assert!(fixture
        .store
        .finish(claimed[0].claim, started.message.id, None, sent, now)
        .await
        .unwrap());
    fixture.clock.advance(TimeDelta::seconds(5));
    assert_eq!(run_steps(&fixture).await, 0, "sent, no news yet");
    fixture
        .store
        .record_delivery(
            "SM00000000000000000000000000000001",
            DeliveryEvent {
                status: MessageStatus::Undelivered,
                error_code: Some("30003".into()),
                error_message: None,
                price: None,
                received_at: fixture.clock.now(),
            },
            None,
        )
        .await
        .unwrap();

    assert_eq!(run_steps(&fixture).await, 1);
    assert_eq!(
        channels_sent(&fixture, &started).await,
        [Channel::Sms, Channel::Voice]
    );
    let call_code = fixture
        .services
        .check_verification("auth", started.verification.id, &code("222222"))
        .await
        .unwrap();
    assert_eq!(call_code.status, VerificationStatus::Approved);
}

#[tokio::test]
async fn no_step_follows_an_approval() {
    let fixture = fixture().await;
    let started = start(&fixture).await;
    fixture
        .services
        .check_verification("auth", started.verification.id, &code("111111"))
        .await
        .unwrap();
    fixture.clock.advance(TimeDelta::seconds(60));
    run_steps(&fixture).await;
    assert_eq!(channels_sent(&fixture, &started).await, [Channel::Sms]);
    let workflow = fixture
        .store
        .workflow(started.verification.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(workflow.next_step_at, None, "stopped");
    assert_eq!(
        workflow.stopped_reason.as_deref(),
        Some("the verification is approved")
    );
}

#[tokio::test]
async fn a_step_the_send_limit_refuses_ends_the_workflow() {
    let guards = GuardConfig {
        per_number: SendLimit {
            max: 1,
            window: TimeDelta::hours(1),
        },
        ..GuardConfig::default()
    };
    let fixture = fixture_with(texts_and_calls(), guards).await;
    let started = start(&fixture).await;
    fixture.clock.advance(TimeDelta::seconds(60));
    assert_eq!(run_steps(&fixture).await, 1, "claimed, then refused");
    assert_eq!(channels_sent(&fixture, &started).await, [Channel::Sms]);
    let workflow = fixture
        .store
        .workflow(started.verification.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(workflow.next_step_at, None);
    assert!(
        workflow
            .stopped_reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with("too many codes sent to this number")),
        "{workflow:?}"
    );
    fixture.clock.advance(TimeDelta::seconds(60));
    assert_eq!(run_steps(&fixture).await, 0);
}

#[tokio::test]
async fn a_workflow_with_a_channel_no_provider_carries_is_refused_naming_it_before_any_send() {
    let texts_only = OfferedChannels {
        sms: true,
        whatsapp: false,
        voice: false,
    };
    let fixture = fixture_with(texts_only, GuardConfig::default()).await;
    let error = fixture
        .services
        .start_verification("auth", sms_then_voice())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StartError::ChannelNotOffered {
                channel: Channel::Voice,
                ..
            }
        ),
        "{error:?}"
    );
    let now = fixture.clock.now();
    assert!(fixture
        .store
        .claim_due(now, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn call_me_instead_calls_now_and_the_workflow_does_not_call_again() {
    let fixture = fixture().await;
    let started = start(&fixture).await;
    fixture.clock.advance(TimeDelta::seconds(30));
    let resent = fixture
        .services
        .start_verification(
            "auth",
            StartRequest {
                channel: Channel::Voice,
                workflow: None,
                ..sms_then_voice()
            },
        )
        .await
        .unwrap();
    assert!(!resent.created);
    assert_eq!(resent.message.channel, Channel::Voice);
    assert_eq!(resent.verification.channel, Channel::Voice);

    fixture.clock.advance(TimeDelta::seconds(120));
    assert_eq!(run_steps(&fixture).await, 0);
    assert_eq!(
        channels_sent(&fixture, &started).await,
        [Channel::Sms, Channel::Voice]
    );
}
