//! Messages through the HTTP API to Twilio and back: sent, failed, idempotent retries, and the
//! dates the list and report accept.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{TestApp, MESSAGES_PATH};

#[tokio::test]
async fn a_templated_message_ends_sent_with_the_twilio_sid() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM0123456789abcdef0123456789abcdef")
        .await;

    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+447700900123", "template": "two-factor-auth",
                   "data": {"code": "424242", "expiryMinutes": 5}}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    assert_eq!(message["status"], "queued");
    assert_eq!(message["segments"], 1);
    let id = message["id"].as_str().unwrap();

    let sent = app.wait_for_status(id, "sent").await;
    assert_eq!(sent["provider_sid"], "SM0123456789abcdef0123456789abcdef");
    assert_eq!(sent["to"], "+447700900123");
    assert_eq!(sent["template"], "two-factor-auth");
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(sent["attempts"][0]["outcome"], "sent");
    let request = &app.twilio_requests(1).await[0];
    assert!(request["Body"].contains("424242"));
}

#[tokio::test]
async fn an_invalid_number_at_twilio_fails_after_one_attempt_with_its_code() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number +15551234567 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (_, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "Hello"}),
        )
        .await;
    let failed = app
        .wait_for_status(message["id"].as_str().unwrap(), "failed")
        .await;
    assert_eq!(failed["error_code"], "21211");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(failed["attempts"][0]["outcome"], "permanent_error");
    assert_eq!(failed["attempts"][0]["http_status"], 400);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_message_and_sends_once() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000009")
        .await;
    let send = || async {
        let response = app
            .client
            .post(format!("{}/v1/messages", app.base))
            .bearer_auth(crate::support::API_KEY)
            .header("Idempotency-Key", "order-42-shipped")
            .json(&json!({"to": "+15551234567", "body": "Your order shipped"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    let (first_status, first) = send().await;
    let (second_status, second) = send().await;
    assert_eq!((first_status, second_status), (202, 200));
    assert_eq!(first["id"], second["id"]);
    app.wait_for_status(first["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(app.twilio.received_requests().await.unwrap().len(), 1);
}

/// Sends `body` raw (its bytes as given) under `key`, as a client retrying would.
async fn send_keyed(app: &TestApp, key: &str, body: &str) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .bearer_auth(crate::support::API_KEY)
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_retry_with_the_same_request_answers_the_message_as_get_shows_it_once_sent() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000011")
        .await;
    let (status, first) = send_keyed(
        &app,
        "login-77",
        r#"{"to": "+15551234567", "template": "two-factor-auth",
            "data": {"code": "424242", "expiryMinutes": 5}}"#,
    )
    .await;
    assert_eq!(status, 202, "{first}");
    let id = first["id"].as_str().unwrap();
    app.wait_for_status(id, "sent").await;

    // The same fields and values, written differently: the same request. The template is
    // sensitive, so the stored body is empty by now; the fingerprint does not need it.
    let (status, replayed) = send_keyed(
        &app,
        "login-77",
        r#"{"data":{"expiryMinutes":5,"code":"424242"},"template":"two-factor-auth",
            "channel":"sms","to":"+1 555 123 4567"}"#,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    let (_, shown) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(replayed, shown);
    assert_eq!(replayed["status"], "sent");
    assert_eq!(replayed["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(app.twilio.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_request_is_refused_naming_it() {
    let app = TestApp::spawn().await;
    let (status, first) = send_keyed(
        &app,
        "order-42-shipped",
        r#"{"to": "+15551234567", "template": "two-factor-auth",
            "data": {"code": "424242", "expiryMinutes": 5}}"#,
    )
    .await;
    assert_eq!(status, 202, "{first}");

    for (what, other) in [
        (
            "another number",
            r#"{"to": "+15557654321", "template": "two-factor-auth",
                "data": {"code": "424242", "expiryMinutes": 5}}"#,
        ),
        (
            "other data",
            r#"{"to": "+15551234567", "template": "two-factor-auth",
                "data": {"code": "999999", "expiryMinutes": 5}}"#,
        ),
        (
            "a body instead of the template",
            r#"{"to": "+15551234567", "body": "Your code is 424242"}"#,
        ),
    ] {
        let (status, problem) = send_keyed(&app, "order-42-shipped", other).await;
        assert_eq!(status, 422, "{what}: {problem}");
        assert_eq!(problem["type"], "idempotency-key-reused", "{what}");
        assert_eq!(problem["field"], "Idempotency-Key", "{what}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("`order-42-shipped`"),
            "{what}: {problem}"
        );
    }
    let (_, page) = app.get("/v1/messages").await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "nothing else queued: {page}");
    assert_eq!(messages[0]["id"], first["id"]);
}

#[tokio::test]
async fn list_and_report_dates_take_a_period_before_now_and_say_what_they_accept() {
    let app = TestApp::spawn().await;
    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "Your order shipped"}),
        )
        .await;
    assert_eq!(status, 202, "{message}");

    let (status, page) = app.get("/v1/messages?since=7d").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["id"], message["id"]);
    let (_, page) = app.get("/v1/messages?until=30m").await;
    assert_eq!(
        page["messages"],
        json!([]),
        "created within the last 30 minutes"
    );

    let (status, report) = app.get("/v1/reports/usage?since=24h").await;
    assert_eq!(status, 200, "{report}");
    let since = chrono::DateTime::parse_from_rfc3339(report["since"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(report["until"].as_str().unwrap()).unwrap();
    assert_eq!(until - since, chrono::TimeDelta::hours(24));
    assert_eq!(report["groups"][0]["messages"], 1, "{report}");

    for query in ["/v1/messages?since=yesterday", "/v1/reports/usage?since=7w"] {
        let (status, problem) = app.get(query).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["field"], "since", "{query}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not an RFC 3339 date-time nor a relative period like 7d or 24h"),
            "{query}: {problem}"
        );
    }
}
