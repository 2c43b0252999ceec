//! Calls that speak a code: the `POST` to the Calls resource, its TwiML, its failures, the
//! status callback of a call and its lookup.

use adapters_twilio::{parse_status_callback, TwilioSmsProvider};
use chrono::{DateTime, Utc};
use domain::{Channel, MessageStatus, PhoneNumber, Price};
use ports::{ProviderErrorKind, SentMessageSearch, SmsProvider, StatusLookup};
use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::{config_for, error_json, form_is, sms, ACCOUNT_SID, AUTH_TOKEN, TO, USER_AGENT};

pub const VOICE_FROM: &str = "+15005550009";
pub const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const CALLBACK: &str = "https://notify.example.com/v1/webhooks/twilio/status";
const SPOKEN: &str = "Your code is: 4, 0, 2.\nOnce again: 4, 0, 2.";

pub fn calls_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")
}

/// A provider that calls from [`VOICE_FROM`], with status callbacks.
pub fn calling_provider(server: &MockServer) -> TwilioSmsProvider {
    let mut config = config_for(server);
    config.voice_from = Some(PhoneNumber::parse(VOICE_FROM).unwrap());
    config.status_callback_url = Some(CALLBACK.parse().unwrap());
    TwilioSmsProvider::new(config).unwrap()
}

pub fn call(text: &str, locale: Option<&str>) -> ports::OutboundMessage {
    let mut message = sms(text);
    message.channel = Channel::Voice;
    message.locale = locale.map(str::to_owned);
    message.sensitive = true;
    message
}

/// The call resource Twilio answers a create with.
pub fn created_call() -> serde_json::Value {
    json!({
        "sid": CALL_SID, "status": "queued", "to": TO, "from": VOICE_FROM,
        "price": null, "price_unit": "USD", "direction": "outbound-api",
        "account_sid": ACCOUNT_SID, "api_version": "2010-04-01"
    })
}

fn calls_post(twiml: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(calls_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(header("user-agent", USER_AGENT))
        .and(form_is(&[
            ("To", TO),
            ("From", VOICE_FROM),
            ("Twiml", twiml),
            ("StatusCallback", CALLBACK),
        ]))
}

#[tokio::test]
async fn a_call_speaks_each_line_in_the_locales_voice_from_the_voice_number() {
    let server = MockServer::start().await;
    let twiml = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
        r#"<Pause length="1"/><Say language="fr-FR" voice="Google.fr-FR-Standard-A">Your code is: 4, 0, 2.</Say>"#,
        r#"<Pause length="1"/><Say language="fr-FR" voice="Google.fr-FR-Standard-A">Once again: 4, 0, 2.</Say>"#,
        "</Response>"
    );
    calls_post(twiml)
        .respond_with(ResponseTemplate::new(201).set_body_json(created_call()))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = calling_provider(&server)
        .send(&call(SPOKEN, Some("fr")))
        .await
        .unwrap();

    assert_eq!(receipt.provider, "twilio");
    assert_eq!(receipt.provider_sid, CALL_SID);
    assert_eq!(receipt.segments, None);
    assert_eq!(receipt.price, None);
}

#[tokio::test]
async fn without_a_number_to_call_from_no_call_is_offered_or_placed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_call()))
        .expect(0)
        .mount(&server)
        .await;
    let provider = TwilioSmsProvider::new(config_for(&server)).unwrap();
    assert!(!provider.can_send(Channel::Voice));
    assert!(provider.can_send(Channel::Sms) && provider.can_send(Channel::Whatsapp));
    assert!(calling_provider(&server).can_send(Channel::Voice));

    let error = provider.send(&call(SPOKEN, None)).await.unwrap_err();

    assert_eq!(error.kind, ProviderErrorKind::Account);
    assert!(error.message.contains("TWILIO_VOICE_FROM"), "{error}");
}

#[tokio::test]
async fn a_number_that_cannot_be_called_is_final_and_an_unverified_caller_id_the_accounts() {
    for (code, kind) in [
        (21215, ProviderErrorKind::Permanent),
        (21217, ProviderErrorKind::Permanent),
        (21214, ProviderErrorKind::Permanent),
        (21210, ProviderErrorKind::Account),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(calls_path()))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(error_json(400, code, "refused")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let error = calling_provider(&server)
            .send(&call(SPOKEN, None))
            .await
            .unwrap_err();

        assert_eq!(error.kind, kind, "{code}");
        assert_eq!(error.code.as_deref(), Some(code.to_string().as_str()));
    }
}

#[tokio::test]
async fn an_unanswered_call_is_never_searched_for_in_the_message_list() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .expect(0)
        .mount(&server)
        .await;

    let found = calling_provider(&server)
        .find_sent(&call(SPOKEN, None), Utc::now(), Utc::now())
        .await;

    assert_eq!(found, Ok(None));
}

fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_268_800, 0).unwrap()
}

fn call_callback(status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CALL_SID),
        ("CallStatus", status),
        ("Direction", "outbound-api"),
        ("From", VOICE_FROM),
        ("To", TO),
        ("CallDuration", "14"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect()
}

/// The mapping the README documents: answered is delivered, busy or unanswered undelivered,
/// not placed or canceled failed; a call still going on is sent.
#[test]
fn a_calls_status_callback_reads_as_a_delivery_of_its_sid() {
    for (twilio, status, why) in [
        ("completed", MessageStatus::Delivered, None),
        (
            "busy",
            MessageStatus::Undelivered,
            Some("the line was busy"),
        ),
        (
            "no-answer",
            MessageStatus::Undelivered,
            Some("nobody answered the call"),
        ),
        (
            "failed",
            MessageStatus::Failed,
            Some("the call could not be placed"),
        ),
        (
            "canceled",
            MessageStatus::Failed,
            Some("the call was canceled"),
        ),
        ("ringing", MessageStatus::Sent, None),
        ("in-progress", MessageStatus::Sent, None),
    ] {
        let parsed = parse_status_callback(&call_callback(twilio), received_at()).unwrap();
        assert_eq!(parsed.message_sid, CALL_SID, "{twilio}");
        assert_eq!(parsed.channel, Channel::Voice, "{twilio}");
        assert_eq!(parsed.to, Some(PhoneNumber::parse(TO).unwrap()));
        assert_eq!(parsed.event.status, status, "{twilio}");
        assert_eq!(parsed.event.error_message.as_deref(), why, "{twilio}");
        assert_eq!(parsed.event.received_at, received_at());
    }
    let unknown = parse_status_callback(&call_callback("dialing"), received_at());
    assert!(unknown.is_err());
    let mut no_status = call_callback("completed");
    no_status.retain(|(name, _)| name != "CallStatus");
    assert!(parse_status_callback(&no_status, received_at()).is_err());
}

#[tokio::test]
async fn a_calls_lookup_asks_the_call_resource_and_reads_its_price() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
        )))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sid": CALL_SID, "status": "no-answer", "price": "-0.01300", "price_unit": "USD"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let event = calling_provider(&server)
        .lookup(CALL_SID, received_at())
        .await
        .unwrap();

    assert_eq!(event.status, MessageStatus::Undelivered);
    assert_eq!(
        event.price,
        Some(Price {
            amount: "0.013".into(),
            currency: "USD".into()
        })
    );
    assert_eq!(
        event.error_message.as_deref(),
        Some("nobody answered the call")
    );
}
