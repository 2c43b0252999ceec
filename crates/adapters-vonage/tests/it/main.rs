//! The Vonage adapter against a wiremock server standing in for Vonage's SMS API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use adapters_vonage::{VonageConfig, VonageSmsProvider};
use domain::{Channel, MessageId, PhoneNumber};
use ports::{OutboundMessage, Price, ProviderErrorKind, SmsProvider};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wiremock_form::Form;

const API_KEY: &str = "vonage-key";
const API_SECRET: &str = "vonage-secret-never-logged";

fn provider_for(server: &MockServer) -> VonageSmsProvider {
    VonageSmsProvider::new(VonageConfig {
        base_url: server.uri().parse().unwrap(),
        api_key: API_KEY.into(),
        api_secret: SecretString::from(API_SECRET),
        from: "+15005550006".into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
    })
    .unwrap()
}

fn sms(body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::generate(),
        to: PhoneNumber::parse("+447700900123").unwrap(),
        channel: Channel::Sms,
        body: body.into(),
        locale: None,
        content_sid: None,
        validity: None,
        sensitive: false,
    }
}

/// The form body holds exactly the expected pairs: a missing or extra field fails.
fn form_is(message: &OutboundMessage, extra: &[(&str, &str)]) -> Form {
    let id = message.message_id.to_string();
    let pairs: Vec<(&str, &str)> = [
        ("api_key", API_KEY),
        ("api_secret", API_SECRET),
        ("from", "15005550006"),
        ("to", "447700900123"),
        ("text", message.body.as_str()),
        ("client-ref", id.as_str()),
    ]
    .iter()
    .chain(extra)
    .copied()
    .collect();
    Form::exactly(&pairs)
}

fn accepted(parts: usize) -> Value {
    let messages: Vec<Value> = (0..parts)
        .map(|index| {
            json!({"to": "447700900123", "message-id": format!("0A00000012345678{index}"),
                   "status": "0", "remaining-balance": "3.14", "message-price": "0.03330000",
                   "network": "23410"})
        })
        .collect();
    json!({"message-count": parts.to_string(), "messages": messages})
}

fn refused(status: &str, text: &str) -> Value {
    json!({"message-count": "1", "messages": [{"status": status, "error-text": text}]})
}

async fn answer(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn sends_key_secret_from_to_text_and_client_ref_as_a_form() {
    let server = MockServer::start().await;
    let message = sms("Your code is 123456");
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(form_is(&message, &[]))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(1)))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = provider_for(&server).send(&message).await.unwrap();
    assert_eq!(receipt.provider, "vonage");
    assert_eq!(receipt.provider_sid, "0A000000123456780");
    assert_eq!(receipt.segments, Some(1));
    assert_eq!(
        receipt.price,
        Some(Price {
            amount: "0.0333".into(),
            currency: "EUR".into()
        })
    );
}

#[tokio::test]
async fn text_outside_gsm7_is_sent_as_unicode_and_validity_as_ttl() {
    let server = MockServer::start().await;
    let mut message = sms("Ваш код 123456");
    message.validity = Some(Duration::from_secs(300));
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(form_is(&message, &[("type", "unicode"), ("ttl", "300000")]))
        .respond_with(ResponseTemplate::new(200).set_body_json(accepted(1)))
        .expect(1)
        .mount(&server)
        .await;
    provider_for(&server).send(&message).await.unwrap();
}

#[tokio::test]
async fn a_concatenated_message_is_sent_with_every_parts_id_and_their_prices_added() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200).set_body_json(accepted(2)),
    )
    .await;
    let receipt = provider_for(&server)
        .send(&sms(&"a".repeat(300)))
        .await
        .unwrap();
    assert_eq!(receipt.provider_sid, "0A000000123456780,0A000000123456781");
    assert_eq!(receipt.segments, Some(2));
    assert_eq!(
        receipt.price,
        Some(Price {
            amount: "0.0666".into(),
            currency: "EUR".into()
        })
    );
}

/// Part 1 went out, part 2 was throttled: a status that alone is retryable, but a retry would
/// send part 1 again, and Vonage cannot send part 2 alone.
#[tokio::test]
async fn a_part_refused_after_others_went_out_is_final_and_names_what_went_out() {
    let server = MockServer::start().await;
    let mut body = accepted(1);
    body["message-count"] = json!("2");
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"status": "1", "error-text": "Throttled"}));
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;

    let error = provider_for(&server)
        .send(&sms(&"a".repeat(300)))
        .await
        .unwrap_err();

    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert!(!error.is_retryable() && !error.is_provider_wide());
    assert_eq!(error.code.as_deref(), Some("1"));
    assert_eq!(error.message, "Throttled (vonage sent 1 of 2 parts)");
    let sent = error.partly_sent.expect("the part that went out");
    assert_eq!(sent.provider, "vonage");
    assert_eq!(sent.provider_sid, "0A000000123456780");
    assert_eq!(sent.price.unwrap().amount, "0.0333");
}

#[tokio::test]
async fn an_unreadable_price_leaves_the_receipt_without_one() {
    let server = MockServer::start().await;
    let mut body = accepted(1);
    body["messages"][0]["message-price"] = json!("1e400");
    answer(&server, ResponseTemplate::new(200).set_body_json(body)).await;
    let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();
    assert_eq!(receipt.provider_sid, "0A000000123456780");
    assert_eq!(receipt.price, None);
}

#[tokio::test]
async fn throttling_and_internal_errors_are_retryable() {
    for status in ["1", "5"] {
        let server = MockServer::start().await;
        answer(
            &server,
            ResponseTemplate::new(200).set_body_json(refused(status, "Throttled")),
        )
        .await;
        let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
        assert_eq!(error.kind, ProviderErrorKind::Retryable, "status {status}");
        assert_eq!(error.code.as_deref(), Some(status));
    }
}

#[tokio::test]
async fn invalid_numbers_are_permanent_with_vonage_text() {
    for (status, text) in [
        ("3", "Invalid to address"),
        ("6", "Invalid message"),
        ("7", "Number barred"),
        ("29", "Non-Whitelisted Destination"),
    ] {
        let server = MockServer::start().await;
        answer(
            &server,
            ResponseTemplate::new(200).set_body_json(refused(status, text)),
        )
        .await;
        let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
        assert_eq!(error.kind, ProviderErrorKind::Permanent, "status {status}");
        assert_eq!(error.code.as_deref(), Some(status));
        assert_eq!(error.message, text);
    }
}

#[tokio::test]
async fn account_problems_are_the_accounts_with_vonage_text() {
    for (status, text) in [
        ("4", "Bad Credentials"),
        ("8", "Partner account barred"),
        ("9", "Partner quota exceeded"),
        ("11", "Account not enabled for HTTP"),
        ("14", "Invalid Signature"),
        ("15", "Illegal Sender Address - rejected"),
    ] {
        let server = MockServer::start().await;
        answer(
            &server,
            ResponseTemplate::new(200).set_body_json(refused(status, text)),
        )
        .await;
        let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
        assert_eq!(error.kind, ProviderErrorKind::Account, "status {status}");
        assert_eq!(error.provider, "vonage");
        assert_eq!(error.code.as_deref(), Some(status));
        assert_eq!(error.message, text);
    }
}

#[tokio::test]
async fn http_5xx_and_429_are_retryable_401_the_accounts_and_other_4xx_permanent() {
    for (status, kind) in [
        (503, ProviderErrorKind::Retryable),
        (429, ProviderErrorKind::Retryable),
        (401, ProviderErrorKind::Account),
        (400, ProviderErrorKind::Permanent),
    ] {
        let server = MockServer::start().await;
        answer(
            &server,
            ResponseTemplate::new(status).set_body_string("<html>"),
        )
        .await;
        let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
        assert_eq!(error.kind, kind, "HTTP {status}");
        assert_eq!(error.http_status, Some(status));
    }
}

#[tokio::test]
async fn an_unreadable_success_is_not_retried() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200).set_body_string("<html>"),
    )
    .await;
    let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert_eq!(error.http_status, Some(200));
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(accepted(1))
            .set_delay(Duration::from_secs(2)),
    )
    .await;
    let error = provider_for(&server).send(&sms("hi")).await.unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert!(
        error.message.contains("did not answer"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn whatsapp_is_refused_without_a_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let mut message = sms("hi");
    message.channel = Channel::Whatsapp;
    let error = provider_for(&server).send(&message).await.unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Permanent);
}
