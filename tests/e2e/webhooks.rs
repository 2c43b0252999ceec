//! Twilio's status callbacks: a signed report moves a sent message to its carrier status; an
//! unsigned or forged one changes nothing.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use wiremock::ResponseTemplate;

use crate::fake_twilio::{form_fields, messages_post};
use crate::support::{TestApp, ACCOUNT_SID, AUTH_TOKEN, FROM};

const PUBLIC_BASE_URL: &str = "https://notify.example.com";
/// What Twilio is told to call, and therefore signs (the service itself listens elsewhere).
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";
const WEBHOOK_PATH: &str = "/v1/webhooks/twilio/status";
const SID: &str = "SM0123456789abcdef0123456789abcdef";
const TO: &str = "+447700900123";

/// Twilio's signature, computed here as its helper libraries do: base64 of HMAC-SHA1 under the
/// auth token over the URL and every parameter sorted by name.
pub(crate) fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

fn callback(sid: &str, status: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AccountSid", ACCOUNT_SID.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("From", "+15005550006".to_owned()),
        ("MessageSid", sid.to_owned()),
        ("MessageStatus", status.to_owned()),
        ("SmsSid", sid.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("To", TO.to_owned()),
    ]
}

/// Posts `params` as Twilio does, with `signature` (none when `None`); the status and body.
async fn post_callback(
    app: &TestApp,
    params: &[(&str, String)],
    signature: Option<&str>,
) -> (u16, Value) {
    post_callback_with(app, params, signature, &[]).await
}

async fn post_callback_with(
    app: &TestApp,
    params: &[(&str, String)],
    signature: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}{WEBHOOK_PATH}", app.base))
        .form(params);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn signed(app: &TestApp, params: &[(&str, String)]) -> (u16, Value) {
    signed_for(app, CALLBACK_URL, params).await
}

/// Posts `params` signed as Twilio signs a callback to `url`.
async fn signed_for(app: &TestApp, url: &str, params: &[(&str, String)]) -> (u16, Value) {
    let pairs: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let signature = twilio_signature(url, &pairs);
    post_callback(app, params, Some(&signature)).await
}

/// A message accepted by Twilio as [`SID`], having asked for status callbacks to
/// [`CALLBACK_URL`].
async fn sent_message(app: &TestApp) -> String {
    sent_message_calling_back(app, CALLBACK_URL).await
}

/// A message accepted by Twilio as [`SID`], whose form asked for status callbacks to
/// `callback_url`.
async fn sent_message_calling_back(app: &TestApp, callback_url: &str) -> String {
    messages_post(form_fields(
        &[
            ("To", TO),
            ("From", FROM),
            ("Body", "Your order has shipped"),
            ("StatusCallback", callback_url),
        ],
        &[],
    ))
    .respond_with(ResponseTemplate::new(201).set_body_json(json!({
        "sid": SID, "status": "queued", "num_segments": "1", "price": "-0.00790",
        "price_unit": "USD", "error_code": null
    })))
    .expect(1)
    .mount(&app.twilio)
    .await;
    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": TO, "body": "Your order has shipped"}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    let id = message["id"].as_str().unwrap().to_owned();
    let sent = app.wait_for_status(&id, "sent").await;
    assert_eq!(sent["provider_sid"], SID);
    assert_eq!(
        sent["price"],
        json!({"amount": "0.0079", "currency": "USD"})
    );
    id
}

/// Twilio reports its charge as `-0.00790`: the message's price and the report's cost are the
/// amount spent.
#[tokio::test]
async fn a_twilio_charge_is_reported_as_money_spent() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;
    sent_message(&app).await;

    let (status, report) = app.get("/v1/reports/usage?group_by=api_key").await;

    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["groups"][0]["cost"],
        json!([{"currency": "USD", "amount": "0.0079"}])
    );
}

#[tokio::test]
async fn a_signed_delivered_callback_marks_the_message_delivered_and_a_forged_one_is_refused() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;
    let id = sent_message(&app).await;
    let delivered = callback(SID, "delivered");

    let (status, problem) = post_callback(&app, &delivered, Some("bm90IGEgc2lnbmF0dXJl")).await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["field"], "X-Twilio-Signature");
    let (status, _) = post_callback(&app, &delivered, None).await;
    assert_eq!(status, 403);
    let (_, message) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(
        message["status"], "sent",
        "a refused callback changes nothing"
    );

    let (status, body) = signed(&app, &delivered).await;
    assert_eq!(status, 200, "{body}");
    let (_, message) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "delivered");
    assert_eq!(
        message["price"],
        json!({"amount": "0.0079", "currency": "USD"})
    );

    // A late `sent`, signed and all, does not move it back.
    let (status, _) = signed(&app, &callback(SID, "sent")).await;
    assert_eq!(status, 200);
    let (_, message) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "delivered");
}

/// Behind a proxy that serves the service under a path, Twilio must be told (and sign) the
/// URL with that path, while the request reaches the service without it.
#[tokio::test]
async fn a_public_base_url_with_a_path_keeps_it_in_the_status_callback_twilio_signs() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", "https://notify.example.com/sms")]).await;
    let callback_url = "https://notify.example.com/sms/v1/webhooks/twilio/status";
    let id = sent_message_calling_back(&app, callback_url).await;
    let delivered = callback(SID, "delivered");

    let (status, problem) = signed_for(&app, CALLBACK_URL, &delivered).await;
    assert_eq!(
        status, 403,
        "signed for the URL without the path: {problem}"
    );
    let (status, body) = signed_for(&app, callback_url, &delivered).await;
    assert_eq!(status, 200, "{body}");
    let (_, message) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "delivered");
}

#[tokio::test]
async fn an_undelivered_callback_keeps_the_carrier_error_code() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;
    let id = sent_message(&app).await;
    let mut undelivered = callback(SID, "undelivered");
    undelivered.push(("ErrorCode", "30003".to_owned()));
    undelivered.push(("ErrorMessage", "Unreachable destination handset".to_owned()));

    let (status, _) = signed(&app, &undelivered).await;

    assert_eq!(status, 200);
    let (_, message) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(message["status"], "undelivered");
    assert_eq!(message["error_code"], "30003");
    assert_eq!(message["error_message"], "Unreachable destination handset");
}

#[tokio::test]
async fn a_signed_callback_for_an_unknown_message_is_accepted_so_twilio_stops() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;

    let (status, body) = signed(
        &app,
        &callback("SMffffffffffffffffffffffffffffffff", "delivered"),
    )
    .await;

    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_signed_callback_without_a_status_names_the_field() {
    let app = TestApp::spawn_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;
    let params: Vec<(&str, String)> = callback(SID, "delivered")
        .into_iter()
        .filter(|(name, _)| !name.ends_with("Status"))
        .collect();

    let (status, problem) = signed(&app, &params).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "MessageStatus");
}

#[tokio::test]
async fn without_public_base_url_there_is_no_status_callback_route() {
    let app = TestApp::spawn().await;

    let (status, _) = signed(&app, &callback(SID, "delivered")).await;

    assert_eq!(status, 404);
}

/// Twilio retries a callback it got no answer to, with the same idempotency token. Which of the
/// two guards stops the repeat (the token, or the status that cannot move to itself) is the
/// store's business (`a_report_with_a_token_already_applied_is_a_duplicate`); here, the message
/// and its history change once.
#[tokio::test]
async fn a_retried_callback_changes_the_message_and_its_history_once() {
    let app = TestApp::spawn_on_postgres_with(&[("PUBLIC_BASE_URL", PUBLIC_BASE_URL)]).await;
    let id = sent_message(&app).await;
    let mut undelivered = callback(SID, "undelivered");
    undelivered.push(("ErrorCode", "30003".to_owned()));
    let pairs: Vec<(&str, &str)> = undelivered.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let signature = twilio_signature(CALLBACK_URL, &pairs);
    let token = [(
        "I-Twilio-Idempotency-Token",
        "4b1b4ff1-7f0a-4b6b-b3b1-0c4b0c5b1a11",
    )];

    let (first, _) = post_callback_with(&app, &undelivered, Some(&signature), &token).await;
    let (_, after_first) = app.get(&format!("/v1/messages/{id}")).await;
    let (second, body) = post_callback_with(&app, &undelivered, Some(&signature), &token).await;

    assert_eq!((first, second), (200, 200), "{body}");
    let (_, after_second) = app.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(after_first["status"], "undelivered");
    assert_eq!(after_second, after_first);
    let store = app.database().store().await;
    let events = ports::MessageStore::delivery_events(&store, id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
}
