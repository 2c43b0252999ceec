//! What the adapter sends, and what it reads from a successful answer.

use std::time::Duration;

use adapters_twilio::{TwilioCredentials, TwilioSender, TwilioSmsProvider};
use domain::{Channel, PhoneNumber};
use ports::{Price, ProviderReceipt, SmsProvider};
use secrecy::SecretString;
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

use crate::{
    config_for, created_json, default_post, form_is, provider_for, sms, twilio_post, ACCOUNT_SID,
    AUTH_TOKEN, FROM, MESSAGE_SID, TO,
};

#[tokio::test]
async fn sends_to_from_and_body_with_basic_auth() {
    let server = MockServer::start().await;
    default_post("Hello from sms-notify & co = 100%")
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = provider_for(&server)
        .send(&sms("Hello from sms-notify & co = 100%"))
        .await
        .unwrap();

    assert_eq!(receipt.provider_sid, MESSAGE_SID);
}

#[tokio::test]
async fn the_provider_is_named_twilio() {
    let server = MockServer::start().await;
    assert_eq!(provider_for(&server).name(), "twilio");
}

#[tokio::test]
async fn uses_messaging_service_sid_instead_of_from() {
    let server = MockServer::start().await;
    let service_sid = "MG0123456789abcdef0123456789abcdef";
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[
            ("To", TO),
            ("MessagingServiceSid", service_sid),
            ("Body", "hi"),
        ]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let mut config = config_for(&server);
    config.sender = TwilioSender::MessagingService(service_sid.to_owned());

    let receipt = TwilioSmsProvider::new(config)
        .unwrap()
        .send(&sms("hi"))
        .await
        .unwrap();

    assert_eq!(receipt.provider_sid, MESSAGE_SID);
}

#[tokio::test]
async fn api_key_auth_keeps_account_sid_in_path() {
    let server = MockServer::start().await;
    let key_sid = "SK0123456789abcdef0123456789abcdef";
    twilio_post(
        ACCOUNT_SID,
        key_sid,
        "api-key-secret",
        form_is(&[("To", TO), ("From", FROM), ("Body", "hi")]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let mut config = config_for(&server);
    config.credentials = TwilioCredentials::ApiKey {
        sid: key_sid.to_owned(),
        secret: SecretString::from("api-key-secret"),
    };

    let result = TwilioSmsProvider::new(config)
        .unwrap()
        .send(&sms("hi"))
        .await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn whatsapp_prefixes_both_ends() {
    let server = MockServer::start().await;
    let to = format!("whatsapp:{TO}");
    let from = format!("whatsapp:{FROM}");
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[("To", &to), ("From", &from), ("Body", "hi")]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let mut message = sms("hi");
    message.channel = Channel::Whatsapp;

    let result = provider_for(&server).send(&message).await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn whatsapp_through_a_messaging_service_prefixes_only_the_recipient() {
    let server = MockServer::start().await;
    let service_sid = "MG0123456789abcdef0123456789abcdef";
    let to = format!("whatsapp:{TO}");
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[
            ("To", &to),
            ("MessagingServiceSid", service_sid),
            ("Body", "hi"),
        ]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let mut config = config_for(&server);
    config.sender = TwilioSender::MessagingService(service_sid.to_owned());
    let mut message = sms("hi");
    message.channel = Channel::Whatsapp;

    let result = TwilioSmsProvider::new(config).unwrap().send(&message).await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn status_callback_and_validity_period_sent_when_configured() {
    let server = MockServer::start().await;
    let callback = "https://notify.example.com/v1/webhooks/twilio/status";
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[
            ("To", TO),
            ("From", FROM),
            ("Body", "Your code is 123456"),
            ("StatusCallback", callback),
            ("ValidityPeriod", "599"),
        ]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let mut config = config_for(&server);
    config.status_callback_url = Some(callback.parse().unwrap());
    let mut message = sms("Your code is 123456");
    // Rounded down: a code must not arrive after it has expired.
    message.validity = Some(Duration::from_millis(599_900));
    message.sensitive = true;

    let result = TwilioSmsProvider::new(config).unwrap().send(&message).await;

    assert!(result.is_ok(), "{result:?}");
}

async fn sent_validity_period(validity: Duration) -> String {
    let server = MockServer::start().await;
    let provider = provider_for(&server);
    server
        .register(
            wiremock::Mock::given(wiremock::matchers::method("POST"))
                .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
                .expect(1),
        )
        .await;
    let mut message = sms("hi");
    message.validity = Some(validity);
    provider.send(&message).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .find(|(name, _)| name == "ValidityPeriod")
        .map(|(_, value)| value)
        .unwrap()
}

#[tokio::test]
async fn validity_period_is_clamped_to_twilios_one_to_36000_seconds() {
    assert_eq!(sent_validity_period(Duration::from_millis(300)).await, "1");
    assert_eq!(sent_validity_period(Duration::ZERO).await, "1");
    assert_eq!(
        sent_validity_period(Duration::from_secs(36_000)).await,
        "36000"
    );
    assert_eq!(
        sent_validity_period(Duration::from_secs(86_400)).await,
        "36000"
    );
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_keeps_it() {
    let server = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(format!(
            "/proxy/twilio/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server);
    config.base_url = format!("{}/proxy/twilio/", server.uri()).parse().unwrap();

    let result = TwilioSmsProvider::new(config)
        .unwrap()
        .send(&sms("hi"))
        .await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn parses_receipt_with_string_num_segments_and_price() {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();

    assert_eq!(
        receipt,
        ProviderReceipt {
            provider: "twilio",
            provider_sid: MESSAGE_SID.to_owned(),
            segments: Some(2),
            // Twilio's charge of `-0.01580`, as the amount spent.
            price: Some(Price {
                amount: "0.0158".to_owned(),
                currency: "USD".to_owned(),
            }),
        }
    );
}

#[tokio::test]
async fn parses_receipt_with_null_num_segments_and_price() {
    let server = MockServer::start().await;
    let mut body = created_json();
    body["num_segments"] = json!(null);
    body["price"] = json!(null);
    body["price_unit"] = json!(null);
    body["error_code"] = json!(null);
    default_post("hi")
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();

    assert_eq!(
        receipt,
        ProviderReceipt {
            provider: "twilio",
            provider_sid: MESSAGE_SID.to_owned(),
            segments: None,
            price: None,
        }
    );
}

#[tokio::test]
async fn parses_receipt_with_numeric_num_segments_and_absent_fields() {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "sid": MESSAGE_SID, "num_segments": 3 })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();

    assert_eq!(receipt.segments, Some(3));
    assert_eq!(receipt.price, None);
}

#[tokio::test]
async fn a_huge_or_malformed_price_is_dropped_and_the_message_still_sent() {
    for price in [json!("-1e400"), json!("9".repeat(40)), json!("free")] {
        let server = MockServer::start().await;
        let mut body = created_json();
        body["price"] = price.clone();
        default_post("hi")
            .respond_with(ResponseTemplate::new(201).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;

        let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();

        assert_eq!(receipt.provider_sid, MESSAGE_SID, "{price}");
        assert_eq!(receipt.price, None, "{price}");
    }
}

#[tokio::test]
async fn a_price_without_a_currency_is_not_reported() {
    let server = MockServer::start().await;
    let mut body = created_json();
    body["price_unit"] = json!(null);
    default_post("hi")
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;

    let receipt = provider_for(&server).send(&sms("hi")).await.unwrap();

    assert_eq!(receipt.price, None);
    assert_eq!(receipt.segments, Some(2));
}

#[tokio::test]
async fn the_number_is_sent_in_e164_whatever_it_was_typed_as() {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(&server)
        .await;
    let mut message = sms("hi");
    message.to = PhoneNumber::parse("+1 (555) 123-4567").unwrap();

    let result = provider_for(&server).send(&message).await;

    assert!(result.is_ok(), "{result:?}");
}
