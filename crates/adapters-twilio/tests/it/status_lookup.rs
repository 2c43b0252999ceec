//! The status lookup (`GET .../Messages/{Sid}.json`) against a wiremock Twilio.

use chrono::{DateTime, Utc};
use domain::{DeliveryEvent, MessageStatus, Price};
use ports::{ProviderErrorKind, StatusLookup};
use serde_json::json;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{error_json, provider_for, ACCOUNT_SID, AUTH_TOKEN, MESSAGE_SID};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_268_800, 0).unwrap()
}

fn message_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{MESSAGE_SID}.json")
}

async fn twilio_answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(message_path()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_delivered_message_is_read_with_its_price() {
    let server = twilio_answering(ResponseTemplate::new(200).set_body_json(json!({
        "sid": MESSAGE_SID, "status": "delivered", "price": "-0.00790", "price_unit": "USD",
        "error_code": null, "error_message": null
    })))
    .await;

    let event = provider_for(&server)
        .lookup(MESSAGE_SID, now())
        .await
        .unwrap();

    assert_eq!(
        event,
        DeliveryEvent {
            status: MessageStatus::Delivered,
            error_code: None,
            error_message: None,
            price: Some(Price {
                amount: "0.0079".into(),
                currency: "USD".into()
            }),
            received_at: now(),
        }
    );
}

#[tokio::test]
async fn an_undelivered_message_keeps_the_carrier_error() {
    let server = twilio_answering(ResponseTemplate::new(200).set_body_json(json!({
        "sid": MESSAGE_SID, "status": "undelivered", "price": null, "price_unit": "USD",
        "error_code": 30003, "error_message": "Unreachable destination handset"
    })))
    .await;

    let event = provider_for(&server)
        .lookup(MESSAGE_SID, now())
        .await
        .unwrap();

    assert_eq!(event.status, MessageStatus::Undelivered);
    assert_eq!(event.error_code.as_deref(), Some("30003"));
    assert_eq!(
        event.error_message.as_deref(),
        Some("Unreachable destination handset")
    );
}

#[tokio::test]
async fn a_message_still_on_its_way_reads_as_sent() {
    let server = twilio_answering(
        ResponseTemplate::new(200).set_body_json(json!({"sid": MESSAGE_SID, "status": "sending"})),
    )
    .await;

    let event = provider_for(&server)
        .lookup(MESSAGE_SID, now())
        .await
        .unwrap();

    assert_eq!(event.status, MessageStatus::Sent);
}

#[tokio::test]
async fn an_unknown_message_and_an_outage_are_errors_classified_like_sends() {
    let server = twilio_answering(ResponseTemplate::new(404).set_body_json(error_json(
        404,
        20404,
        "not found",
    )))
    .await;
    let error = provider_for(&server)
        .lookup(MESSAGE_SID, now())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert_eq!(error.code.as_deref(), Some("20404"));

    let server = twilio_answering(ResponseTemplate::new(503)).await;
    let error = provider_for(&server)
        .lookup(MESSAGE_SID, now())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ProviderErrorKind::Retryable);
}

#[tokio::test]
async fn a_sid_that_is_not_a_message_sid_is_never_looked_up() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;

    for sid in ["../Calls/CA1", "console-0193", ""] {
        assert!(
            provider_for(&server).lookup(sid, now()).await.is_err(),
            "{sid}"
        );
    }
}
