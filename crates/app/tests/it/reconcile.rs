//! Reconciliation: a message whose status callback never came is looked up at Twilio (wiremock)
//! and ends with the status Twilio reports.

use std::sync::Arc;
use std::time::Duration;

use adapters_sqlite::SqliteStore;
use adapters_twilio::{TwilioConfig, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use app::dispatch::reconcile::{ReconcileConfig, Reconciler};
use chrono::TimeDelta;
use domain::{Channel, Message, MessageId, MessageStatus, NewMessage, PhoneNumber, Priority};
use ports::{Clock, DispatchOutcome, MessageStore};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::ManualClock;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-token";
const SID: &str = "SM0123456789abcdef0123456789abcdef";

struct Fixture {
    store: Arc<SqliteStore>,
    twilio: MockServer,
    clock: Arc<ManualClock>,
    reconciler: Reconciler,
}

/// Looked up 10 minutes after sending, and again 10 minutes after each lookup.
async fn fixture() -> Fixture {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let twilio = MockServer::start().await;
    let clock = Arc::new(ManualClock::at_t0());
    let lookup = TwilioSmsProvider::new(TwilioConfig {
        base_url: twilio.uri().parse().unwrap(),
        account_sid: ACCOUNT_SID.into(),
        credentials: TwilioCredentials::AuthToken(SecretString::from(AUTH_TOKEN)),
        sender: TwilioSender::From(PhoneNumber::parse("+15005550006").unwrap()),
        voice_from: None,
        whatsapp_from: None,
        status_callback_url: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let reconciler = Reconciler::new(
        store.clone(),
        vec![Arc::new(lookup)],
        clock.clone(),
        ReconcileConfig {
            after: Duration::from_secs(600),
            interval: Duration::from_secs(60),
        },
    );
    Fixture {
        store,
        twilio,
        clock,
        reconciler,
    }
}

/// A message Twilio accepted as [`SID`] now, whose callback will never come.
async fn sent_through_twilio(fixture: &Fixture) -> Message {
    let now = fixture.clock.now();
    let message = fixture
        .store
        .enqueue(NewMessage {
            id: MessageId::generate(),
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            template: None,
            body: "Your order has shipped".into(),
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
            created_at: now,
        })
        .await
        .unwrap()
        .into_message();
    let claimed = fixture
        .store
        .claim_due(now, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let outcome = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: SID.into(),
        segments: Some(1),
        price: None,
    };
    assert!(fixture
        .store
        .finish(claimed[0].claim, message.id, None, outcome, now)
        .await
        .unwrap());
    message
}

fn twilio_reports(status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "sid": SID, "status": status, "price": "-0.00790", "price_unit": "USD",
        "error_code": null, "error_message": null
    }))
}

async fn status_of(fixture: &Fixture, message: &Message) -> MessageStatus {
    MessageStore::get(fixture.store.as_ref(), message.id)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn a_message_whose_callback_never_comes_ends_delivered_through_a_lookup() {
    let fixture = fixture().await;
    let message = sent_through_twilio(&fixture).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json"
        )))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(twilio_reports("delivered"))
        .expect(1)
        .mount(&fixture.twilio)
        .await;

    // Too early: the callback may still come.
    fixture.clock.advance(TimeDelta::seconds(599));
    assert_eq!(fixture.reconciler.reconcile_once().await, 0);
    assert_eq!(status_of(&fixture, &message).await, MessageStatus::Sent);

    fixture.clock.advance(TimeDelta::seconds(1));
    assert_eq!(fixture.reconciler.reconcile_once().await, 1);

    let reconciled = MessageStore::get(fixture.store.as_ref(), message.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reconciled.status, MessageStatus::Delivered);
    assert_eq!(reconciled.price.unwrap().amount, "0.0079");
    assert_eq!(
        fixture
            .store
            .delivery_events(message.id)
            .await
            .unwrap()
            .len(),
        1
    );
    // Final now: never looked up again.
    fixture.clock.advance(TimeDelta::hours(1));
    assert_eq!(fixture.reconciler.reconcile_once().await, 0);
}

#[tokio::test]
async fn a_message_still_on_its_way_is_asked_about_again_only_after_another_wait() {
    let fixture = fixture().await;
    let message = sent_through_twilio(&fixture).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{SID}.json"
        )))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(twilio_reports("sent"))
        .expect(2)
        .mount(&fixture.twilio)
        .await;

    fixture.clock.advance(TimeDelta::seconds(600));
    assert_eq!(fixture.reconciler.reconcile_once().await, 1);
    fixture.clock.advance(TimeDelta::seconds(599));
    assert_eq!(fixture.reconciler.reconcile_once().await, 0);
    fixture.clock.advance(TimeDelta::seconds(1));
    assert_eq!(fixture.reconciler.reconcile_once().await, 1);

    assert_eq!(status_of(&fixture, &message).await, MessageStatus::Sent);
}
