//! Two-factor verification through the use cases, with time under the test's control.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use adapters_sqlite::SqliteStore;
use app::usecases::codes::CodeHasher;
use app::usecases::verify::{CheckError, StartError, StartRequest, Started};
use app::usecases::StorePorts;
use app::Services;
use chrono::TimeDelta;
use domain::{
    Channel, CheckRefusal, CodeLength, PhoneNumber, VerificationCode, VerificationPolicy,
    VerificationStatus,
};
use ports::CodeGenerator;

use crate::ManualClock;
use secrecy::SecretString;

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
    clock: Arc<ManualClock>,
}

async fn fixture(codes: &[&'static str]) -> Fixture {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    let services = Services::builder(
        StorePorts::of(store.clone()),
        Arc::new(template::Templates::built_in().unwrap()),
        CodeHasher::new(SecretString::from("p".repeat(32))),
    )
    .clock(clock.clone())
    .code_generator(Arc::new(ScriptedCodes(Mutex::new(
        codes.iter().copied().collect(),
    ))))
    .verification_policy(VerificationPolicy::default())
    .api_keys(app::usecases::auth::ApiKeys::generate())
    .readiness(app::observability::health::Readiness::new(
        store,
        Arc::new(app::providers::console::ConsoleSmsProvider),
    ))
    .build();
    Fixture { services, clock }
}

fn alice() -> StartRequest {
    StartRequest {
        to: PhoneNumber::parse("+15551234567").unwrap(),
        channel: Channel::Sms,
        locale: None,
        code_length: None,
        app_hash: None,
        client: Default::default(),
        brand: None,
        workflow: None,
        transaction: None,
    }
}

fn code(text: &str) -> VerificationCode {
    VerificationCode::parse(text).unwrap()
}

async fn start(fixture: &Fixture) -> Started {
    fixture
        .services
        .start_verification("auth", alice())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_right_code_is_refused_as_expired_from_the_end_of_its_lifetime() {
    let fixture = fixture(&["246810", "135790"]).await;
    let started = start(&fixture).await;
    let id = started.verification.id;

    fixture
        .clock
        .advance(TimeDelta::minutes(10) - TimeDelta::seconds(1));
    let before = fixture
        .services
        .check_verification("auth", id, &code("000000"))
        .await
        .unwrap();
    assert_eq!(before.status, VerificationStatus::Pending);

    fixture.clock.advance(TimeDelta::seconds(1));
    let after = fixture
        .services
        .check_verification("auth", id, &code("246810"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            after,
            CheckError::Refused(CheckRefusal::Ended(VerificationStatus::Expired))
        ),
        "{after:?}"
    );
    let stored = fixture
        .services
        .verification("auth", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, VerificationStatus::Expired, "written down");

    // Asking again starts afresh rather than reusing the expired one.
    let again = start(&fixture).await;
    assert!(again.created);
    assert_ne!(again.verification.id, id);
}

#[tokio::test]
async fn the_first_code_still_approves_after_a_resend() {
    let fixture = fixture(&["246810", "135790"]).await;
    let first = start(&fixture).await;

    fixture.clock.advance(TimeDelta::seconds(30));
    let resent = start(&fixture).await;
    assert!(!resent.created);
    assert_eq!(resent.verification.id, first.verification.id);
    assert_eq!(resent.verification.send_count, 2);

    let outcome = fixture
        .services
        .check_verification("auth", first.verification.id, &code("246810"))
        .await
        .unwrap();
    assert_eq!(outcome.status, VerificationStatus::Approved);
    assert!(outcome.valid);
}

#[tokio::test]
async fn approving_stops_the_code_still_queued() {
    let fixture = fixture(&["246810", "135790"]).await;
    start(&fixture).await;
    fixture.clock.advance(TimeDelta::seconds(30));
    let resent = start(&fixture).await;

    fixture
        .services
        .check_verification("auth", resent.verification.id, &code("246810"))
        .await
        .unwrap();
    let (message, _) = fixture
        .services
        .message("auth", resent.message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.status, domain::MessageStatus::Expired);
    assert_eq!(message.body, "", "the unsent code is forgotten");
}

/// The use cases count themselves, so that a verification is counted whoever asks for it
/// (the HTTP API, or the CLI in its own process).
#[tokio::test]
async fn the_use_cases_count_starts_refusals_and_checks_in_the_metrics() {
    let fixture = fixture(&["246810"]).await;
    let started = start(&fixture).await;
    let too_soon = fixture
        .services
        .start_verification("auth", alice())
        .await
        .unwrap_err();
    assert!(
        matches!(too_soon, StartError::TooSoon { .. }),
        "{too_soon:?}"
    );
    let wrong = fixture
        .services
        .check_verification("auth", started.verification.id, &code("000000"))
        .await
        .unwrap();
    assert!(!wrong.valid);
    let right = fixture
        .services
        .check_verification_of("auth", &alice().to, &code("246810"))
        .await
        .unwrap();
    assert!(right.valid);

    let text = fixture.services.render_metrics().await.unwrap();
    for line in [
        r#"sms_notify_verifications_total{event="started"} 1"#,
        r#"sms_notify_rate_limit_refusals_total{limit="resend_interval"} 1"#,
        r#"sms_notify_verifications_total{event="failed"} 1"#,
        r#"sms_notify_verifications_total{event="approved"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}
