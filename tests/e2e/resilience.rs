//! Provider resilience end to end: failover to Vonage through the dispatcher, every attempt
//! naming its provider, and test numbers that never reach a provider.

use chrono::{TimeDelta, Utc};
use ports::MessageStore;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fake_twilio::{form_fields, messages_post};
use crate::support::{TestApp, FROM};

const TO: &str = "+447700900123";
const BODY: &str = "Your order has shipped";

#[tokio::test]
async fn a_message_rides_out_three_twilio_503s_through_vonage_and_names_every_attempts_provider() {
    let vonage = MockServer::start().await;
    let app = TestApp::spawn_with(&[
        ("SMS_PROVIDERS", "twilio,vonage"),
        ("VONAGE_API_KEY", "vonage-key"),
        ("VONAGE_API_SECRET", "vonage-secret"),
        ("VONAGE_FROM", "Acme"),
        ("VONAGE_API_BASE_URL", &vonage.uri()),
        ("CIRCUIT_FAILURES", "3"),
        ("RETRY_BASE_MS", "1"),
    ])
    .await;
    messages_post(form_fields(
        &[("To", TO), ("From", FROM), ("Body", BODY)],
        &[],
    ))
    .respond_with(ResponseTemplate::new(503))
    .expect(3)
    .mount(&app.twilio)
    .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .and(vonage_form())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": "447700900123", "message-id": "0A0000001234", "status": "0",
                          "message-price": "0.03330000"}]
        })))
        .expect(1)
        .mount(&vonage)
        .await;

    let (status, message) = app
        .post("/v1/messages", json!({"to": TO, "body": BODY}))
        .await;
    assert_eq!(status, 202, "{message}");
    let sent = app
        .wait_for_status(message["id"].as_str().unwrap(), "sent")
        .await;

    assert_eq!(sent["provider"], "vonage");
    assert_eq!(sent["provider_sid"], "0A0000001234");
    let providers: Vec<&str> = sent["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["twilio", "twilio", "twilio", "vonage"]);
}

/// Vonage first. A long message Vonage sends whole is `sent` with both parts' ids and their
/// prices added; one whose second part Vonage refuses (for the account's quota, which alone
/// sends the next attempt to Twilio) is `failed` for good with the part that went out: one
/// call to Vonage, none to Twilio. The usage report counts both as money spent.
#[tokio::test]
async fn a_long_message_vonage_sends_only_in_part_fails_for_good_with_the_part_that_went_out() {
    let vonage = MockServer::start().await;
    let app = TestApp::spawn_with(&[
        ("SMS_PROVIDERS", "vonage,twilio"),
        ("VONAGE_API_KEY", "vonage-key"),
        ("VONAGE_API_SECRET", "vonage-secret"),
        ("VONAGE_FROM", "Acme"),
        ("VONAGE_API_BASE_URL", &vonage.uri()),
        ("RETRY_BASE_MS", "1"),
    ])
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&app.twilio)
        .await;
    let part = |id: &str| {
        json!({"to": "447700900123", "message-id": id, "status": "0",
               "remaining-balance": "3.14", "message-price": "0.03330000", "network": "23410"})
    };
    let whole = "a".repeat(200);
    let halved = "b".repeat(200);
    for (body, parts) in [
        (&whole, json!([part("0A01"), part("0A02")])),
        (
            &halved,
            json!([part("0A03"), {"status": "9", "error-text": "Partner quota exceeded"}]),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path("/sms/json"))
            .and(form_fields(
                &[
                    ("api_key", "vonage-key"),
                    ("api_secret", "vonage-secret"),
                    ("from", "Acme"),
                    ("to", "447700900123"),
                    ("text", body),
                ],
                &["client-ref"],
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"message-count": "2", "messages": parts})),
            )
            .expect(1)
            .mount(&vonage)
            .await;
    }

    let (_, message) = app
        .post("/v1/messages", json!({"to": TO, "body": whole}))
        .await;
    let sent = app
        .wait_for_status(message["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(sent["provider_sid"], "0A01,0A02");
    assert_eq!(sent["segments"], 2);
    assert_eq!(
        sent["price"],
        json!({"amount": "0.0666", "currency": "EUR"})
    );

    let (_, message) = app
        .post("/v1/messages", json!({"to": TO, "body": halved}))
        .await;
    let failed = app
        .wait_for_status(message["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["provider"], "vonage");
    assert_eq!(failed["provider_sid"], "0A03");
    assert_eq!(failed["error_code"], "9");
    assert_eq!(
        failed["error_message"],
        "Partner quota exceeded (vonage sent 1 of 2 parts)"
    );
    assert_eq!(
        failed["price"],
        json!({"amount": "0.0333", "currency": "EUR"})
    );
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1);

    let (status, report) = app.get("/v1/reports/usage?group_by=api_key").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["groups"][0]["cost"],
        json!([{"currency": "EUR", "amount": "0.0999"}])
    );
}

fn vonage_form() -> wiremock_form::Form {
    form_fields(
        &[
            ("api_key", "vonage-key"),
            ("api_secret", "vonage-secret"),
            ("from", "Acme"),
            ("to", "447700900123"),
            ("text", BODY),
        ],
        &["client-ref"],
    )
}

#[tokio::test]
async fn a_test_number_verification_approves_with_its_fixed_code_and_reaches_no_provider() {
    let app = TestApp::spawn_on_postgres_with(&[
        ("TEST_NUMBERS", "+15005550001:424242"),
        ("ENVIRONMENT", "staging"),
    ])
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&app.twilio)
        .await;
    let store = app.database().store().await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": "+15005550001"}))
        .await;
    assert_eq!(status, 201, "{started}");
    // The dispatcher has taken the code when nothing is left in the queue; it must have gone
    // to the test-number stand-in, as `sent`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.next_due_at().await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the code was never dispatched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let now = Utc::now();
    let answered = store
        .claim_unconfirmed("test-number", now - TimeDelta::hours(1), now, now, 10, now)
        .await
        .unwrap();
    assert_eq!(answered.len(), 1, "{answered:?}");

    let id = started["id"].as_str().unwrap();
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": "424242"}),
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "approved");
    assert_eq!(check["valid"], true);
}
