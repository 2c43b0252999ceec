//! Failover between the real Twilio and Vonage adapters, each talking to its own wiremock
//! server, with the circuits' time under the test's control.

use std::sync::Arc;
use std::time::Duration;

use adapters_twilio::{TwilioConfig, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use adapters_vonage::{VonageConfig, VonageSmsProvider};
use app::providers::failover::{CircuitPolicy, FailoverSmsProvider};
use chrono::TimeDelta;
use domain::{Channel, MessageId, PhoneNumber};
use ports::{OutboundMessage, ProviderErrorKind, SmsProvider};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wiremock_form::Form;

use crate::ManualClock;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-token";
const TWILIO_FROM: &str = "+15005550006";
const VONAGE_KEY: &str = "vonage-key";
const VONAGE_SECRET: &str = "vonage-secret";
const VONAGE_FROM: &str = "Acme";
const TO: &str = "+447700900123";
const BODY: &str = "Your order has shipped";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

struct Providers {
    twilio: MockServer,
    vonage: MockServer,
    clock: Arc<ManualClock>,
    failover: FailoverSmsProvider,
}

/// Twilio first, then Vonage; a circuit opens after 3 failures in a minute for 30 seconds.
async fn providers() -> Providers {
    let twilio = MockServer::start().await;
    let vonage = MockServer::start().await;
    let clock = Arc::new(ManualClock::at_t0());
    let twilio_provider = TwilioSmsProvider::new(TwilioConfig {
        base_url: twilio.uri().parse().unwrap(),
        account_sid: ACCOUNT_SID.into(),
        credentials: TwilioCredentials::AuthToken(SecretString::from(AUTH_TOKEN)),
        sender: TwilioSender::From(PhoneNumber::parse(TWILIO_FROM).unwrap()),
        voice_from: None,
        whatsapp_from: None,
        status_callback_url: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let vonage_provider = VonageSmsProvider::new(VonageConfig {
        base_url: vonage.uri().parse().unwrap(),
        api_key: VONAGE_KEY.into(),
        api_secret: SecretString::from(VONAGE_SECRET),
        from: VONAGE_FROM.into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let failover = FailoverSmsProvider::new(
        vec![Arc::new(twilio_provider), Arc::new(vonage_provider)],
        CircuitPolicy {
            failures: 3,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        },
        clock.clone(),
    );
    Providers {
        twilio,
        vonage,
        clock,
        failover,
    }
}

fn sms() -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::generate(),
        to: PhoneNumber::parse(TO).unwrap(),
        channel: Channel::Sms,
        body: BODY.into(),
        locale: None,
        content_sid: None,
        validity: None,
        sensitive: false,
    }
}

fn twilio_send() -> wiremock::MockBuilder {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(Form::exactly(&[
            ("To", TO),
            ("From", TWILIO_FROM),
            ("Body", BODY),
        ]))
}

fn twilio_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
        "num_segments": "1", "price": null, "price_unit": "USD"
    }))
}

fn vonage_send() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/sms/json")).and(
        Form::exactly(&[
            ("api_key", VONAGE_KEY),
            ("api_secret", VONAGE_SECRET),
            ("from", VONAGE_FROM),
            ("to", "447700900123"),
            ("text", BODY),
        ])
        .any("client-ref"),
    )
}

fn vonage_accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message-count": "1",
        "messages": [{"to": "447700900123", "message-id": "0A0000001234", "status": "0",
                      "message-price": "0.03330000"}]
    }))
}

#[tokio::test]
async fn three_503s_open_twilios_circuit_vonage_takes_over_and_after_the_cool_down_a_probe_returns_to_twilio(
) {
    let providers = providers().await;
    twilio_send()
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .expect(3)
        .mount(&providers.twilio)
        .await;
    vonage_send()
        .respond_with(vonage_accepted())
        .expect(2)
        .mount(&providers.vonage)
        .await;

    for _ in 0..3 {
        let error = providers.failover.send(&sms()).await.unwrap_err();
        assert_eq!(error.provider, "twilio");
        assert_eq!(error.kind, ProviderErrorKind::Retryable);
        assert_eq!(error.http_status, Some(503));
    }
    for _ in 0..2 {
        let receipt = providers.failover.send(&sms()).await.unwrap();
        assert_eq!(receipt.provider, "vonage");
        assert_eq!(receipt.provider_sid, "0A0000001234");
    }

    // Cool-down over: one probe goes back to Twilio, which has recovered; it stays there.
    providers.clock.advance(TimeDelta::seconds(30));
    twilio_send()
        .respond_with(twilio_created())
        .expect(2)
        .mount(&providers.twilio)
        .await;
    for _ in 0..2 {
        let receipt = providers.failover.send(&sms()).await.unwrap();
        assert_eq!(receipt.provider, "twilio");
    }
}

#[tokio::test]
async fn a_21211_from_twilio_is_final_and_never_tried_through_vonage() {
    let providers = providers().await;
    twilio_send()
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .expect(4)
        .mount(&providers.twilio)
        .await;
    vonage_send()
        .respond_with(vonage_accepted())
        .expect(0)
        .mount(&providers.vonage)
        .await;

    // Four in a row: refusals of a recipient never open Twilio's circuit either.
    for _ in 0..4 {
        let error = providers.failover.send(&sms()).await.unwrap_err();
        assert_eq!(error.provider, "twilio");
        assert_eq!(error.kind, ProviderErrorKind::Permanent);
        assert_eq!(error.code.as_deref(), Some("21211"));
    }
}

#[tokio::test]
async fn bad_twilio_credentials_send_the_next_attempt_to_vonage_at_once() {
    let providers = providers().await;
    twilio_send()
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": 20003, "message": "Authenticate", "status": 401
        })))
        .expect(1)
        .mount(&providers.twilio)
        .await;
    vonage_send()
        .respond_with(vonage_accepted())
        .expect(1)
        .mount(&providers.vonage)
        .await;

    let error = providers.failover.send(&sms()).await.unwrap_err();
    // Retryable here, so that the dispatcher makes the next attempt, through Vonage.
    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.code.as_deref(), Some("20003"));
    let receipt = providers.failover.send(&sms()).await.unwrap();
    assert_eq!(receipt.provider, "vonage");
}

#[tokio::test]
async fn with_every_circuit_open_no_provider_is_called_until_the_first_cool_down_ends() {
    let providers = providers().await;
    twilio_send()
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&providers.twilio)
        .await;
    vonage_send()
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&providers.vonage)
        .await;
    providers.failover.send(&sms()).await.unwrap_err();
    providers.clock.advance(TimeDelta::seconds(10));
    providers.failover.send(&sms()).await.unwrap_err();

    let error = providers.failover.send(&sms()).await.unwrap_err();

    assert_eq!(error.provider, "failover");
    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.retry_after, Some(Duration::from_secs(20)));
}

/// Vonage sent part 1 and refused part 2 for the account's quota: an account failure that
/// alone sends the next attempt to another provider, but part 1 is out already.
#[tokio::test]
async fn a_message_vonage_partly_sent_is_final_and_never_tried_through_twilio() {
    let providers = providers().await;
    twilio_send()
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&providers.twilio)
        .await;
    vonage_send()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "2",
            "messages": [
                {"to": "447700900123", "message-id": "0A0000001234", "status": "0",
                 "message-price": "0.03330000"},
                {"status": "9", "error-text": "Partner quota exceeded"}
            ]
        })))
        .expect(1)
        .mount(&providers.vonage)
        .await;
    // Twilio's circuit opens on its bad credentials: the message goes to Vonage.
    providers.failover.send(&sms()).await.unwrap_err();

    let error = providers.failover.send(&sms()).await.unwrap_err();

    assert_eq!(error.provider, "vonage");
    assert_eq!(error.code.as_deref(), Some("9"));
    assert!(!error.is_retryable(), "{error:?}");
    assert_eq!(
        error.partly_sent.map(|sent| sent.provider_sid).as_deref(),
        Some("0A0000001234")
    );
}
