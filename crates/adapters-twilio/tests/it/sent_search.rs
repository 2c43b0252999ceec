//! Finding a message Twilio accepted without answering (`GET .../Messages.json?To=&From=`)
//! against a wiremock Twilio: only a message with our body created within the window counts.

use adapters_twilio::{TwilioSender, TwilioSmsProvider};
use chrono::{DateTime, TimeDelta, Utc};
use ports::{Price, ProviderErrorKind, ProviderReceipt, SentMessageSearch};
use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    config_for, error_json, messages_path, provider_for, sms, ACCOUNT_SID, AUTH_TOKEN, FROM, TO,
};

const BODY: &str = "Your code is 402913";

/// 2026-01-01T12:00:00Z, when the unanswered attempt started.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_268_800, 0).unwrap()
}

fn listed(sid: &str, body: &str, date_created: &str) -> Value {
    json!({
        "sid": sid, "body": body, "date_created": date_created, "date_sent": null,
        "status": "queued", "from": FROM, "to": TO, "direction": "outbound-api",
        "num_segments": "1", "price": null, "price_unit": "USD"
    })
}

fn page(messages: Vec<Value>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messages": messages, "page": 0, "page_size": 50, "start": 0, "end": 2,
        "first_page_uri": "/2010-04-01/Accounts/AC/Messages.json?PageSize=50&Page=0",
        "next_page_uri": null, "previous_page_uri": null,
        "uri": "/2010-04-01/Accounts/AC/Messages.json?PageSize=50&Page=0"
    }))
}

fn list() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(messages_path(ACCOUNT_SID)))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(query_param("To", TO))
        .and(query_param("PageSize", "50"))
}

async fn find(
    provider: &TwilioSmsProvider,
) -> Result<Option<ProviderReceipt>, ports::ProviderError> {
    provider
        .find_sent(
            &sms(BODY),
            t0() - TimeDelta::seconds(5),
            t0() + TimeDelta::seconds(15),
        )
        .await
}

#[tokio::test]
async fn the_message_with_our_body_created_within_the_window_is_found() {
    let server = MockServer::start().await;
    list()
        .and(query_param("From", FROM))
        .respond_with(page(vec![
            // Newest first: another code to the same number, then ours, then an old one of ours.
            listed(
                "SM00000000000000000000000000000003",
                "Your code is 111111",
                "Thu, 01 Jan 2026 12:00:08 +0000",
            ),
            listed(
                "SM00000000000000000000000000000002",
                BODY,
                "Thu, 01 Jan 2026 12:00:07 +0000",
            ),
            listed(
                "SM00000000000000000000000000000001",
                BODY,
                "Thu, 01 Jan 2026 11:59:30 +0000",
            ),
        ]))
        .expect(1)
        .mount(&server)
        .await;

    let found = find(&provider_for(&server)).await.unwrap();

    assert_eq!(
        found,
        Some(ProviderReceipt {
            provider: "twilio",
            provider_sid: "SM00000000000000000000000000000002".into(),
            segments: Some(1),
            price: None::<Price>,
        })
    );
}

#[tokio::test]
async fn nothing_is_found_when_no_message_matches_both_body_and_window() {
    let server = MockServer::start().await;
    list()
        .and(query_param("From", FROM))
        .respond_with(page(vec![
            listed(
                "SM00000000000000000000000000000003",
                "Your code is 111111",
                "Thu, 01 Jan 2026 12:00:08 +0000",
            ),
            listed(
                "SM00000000000000000000000000000001",
                BODY,
                "Thu, 01 Jan 2026 12:00:16 +0000",
            ),
        ]))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(find(&provider_for(&server)).await.unwrap(), None);
}

#[tokio::test]
async fn through_a_messaging_service_the_list_is_filtered_on_the_recipient_alone() {
    let server = MockServer::start().await;
    list()
        .and(query_param_is_missing("From"))
        .respond_with(page(vec![listed(
            "SM00000000000000000000000000000002",
            BODY,
            "Thu, 01 Jan 2026 12:00:01 +0000",
        )]))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server);
    config.sender = TwilioSender::MessagingService("MG0123456789abcdef0123456789abcdef".into());

    let found = find(&TwilioSmsProvider::new(config).unwrap())
        .await
        .unwrap();

    assert_eq!(
        found.map(|receipt| receipt.provider_sid),
        Some("SM00000000000000000000000000000002".into())
    );
}

#[tokio::test]
async fn a_refused_list_is_an_error_the_caller_can_read() {
    let server = MockServer::start().await;
    list()
        .respond_with(ResponseTemplate::new(401).set_body_json(error_json(
            401,
            20003,
            "Authenticate",
        )))
        .expect(1)
        .mount(&server)
        .await;

    let error = find(&provider_for(&server)).await.unwrap_err();

    assert_eq!(error.kind, ProviderErrorKind::Account);
    assert_eq!(error.code.as_deref(), Some("20003"));
}
