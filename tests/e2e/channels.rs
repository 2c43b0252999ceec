//! Verification channels beyond SMS: a call that speaks the code (its status reported by
//! Twilio's signed callback), and WhatsApp codes sent with an approved template, as WhatsApp
//! requires of a business that writes first.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};
use wiremock_form::Form;

use crate::support::{TestApp, ACCOUNT_SID, AUTH_TOKEN, MESSAGES_PATH};

const TO: &str = "+447700900123";
const VOICE_FROM: &str = "+15005550009";
const WHATSAPP_FROM: &str = "+15005550010";
const CALLS_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";
const CALL_SID: &str = "CA0123456789abcdef0123456789abcdef";
const PUBLIC_BASE_URL: &str = "https://notify.example.com";
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";
const EN_TEMPLATE: &str = "HX0123456789abcdef0123456789abcdef";
const FR_TEMPLATE: &str = "HXfedcba9876543210fedcba9876543210";

/// The call's form: exactly these fields, the TwiML checked by the test.
fn call_form() -> Form {
    Form::exactly(&[
        ("To", TO),
        ("From", VOICE_FROM),
        ("StatusCallback", CALLBACK_URL),
    ])
    .field_where("Twiml", |twiml| {
        twiml.starts_with("<?xml") && twiml.ends_with("</Response>")
    })
}

async fn twilio_places_calls(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path(CALLS_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(call_form())
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": CALL_SID, "status": "queued", "price": null, "price_unit": "USD"
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;
}

/// The digits a TwiML document first speaks after "code is:", as one number.
pub fn spoken_code(twiml: &str) -> String {
    const SAID: &str = "code is: ";
    let start = twiml.find(SAID).expect("the code is spoken") + SAID.len();
    twiml[start..]
        .split('.')
        .next()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// The code as the call says it: `1, 2, 3`.
pub fn spoken_digits(code: &str) -> String {
    code.chars()
        .map(String::from)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn twilio_signature(url: &str, params: &[(&str, &str)]) -> String {
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

pub async fn post_callback(app: &TestApp, params: &[(&str, &str)], signature: Option<&str>) -> u16 {
    let mut request = app
        .client
        .post(format!("{}/v1/webhooks/twilio/status", app.base))
        .form(params);
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The one message the service holds (the code's).
async fn the_message(app: &TestApp) -> Value {
    let (status, page) = app.get("/v1/messages").await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{page}");
    messages[0].clone()
}

async fn wait_for_message_status(app: &TestApp, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let message = the_message(app).await;
        if message["status"] == status {
            return message;
        }
        assert!(Instant::now() < deadline, "{message}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_voice_verification_calls_saying_the_digits_twice_and_a_signed_call_status_updates_it() {
    let app = TestApp::spawn_with(&[
        ("TWILIO_VOICE_FROM", VOICE_FROM),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
    ])
    .await;
    twilio_places_calls(&app).await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": TO, "channel": "voice"}))
        .await;

    assert_eq!(status, 201, "{started}");
    assert_eq!(started["channel"], "voice");
    let twiml = app.twilio_requests(1).await[0]["Twiml"].clone();
    let code = spoken_code(&twiml);
    assert_eq!(code.len(), 6, "{twiml}");
    assert_eq!(
        twiml.matches(&spoken_digits(&code)).count(),
        2,
        "the code is said twice, digit by digit: {twiml}"
    );
    assert!(
        twiml.contains(r#"<Say language="en-US" voice="Google.en-US-Standard-C">"#),
        "{twiml}"
    );
    let sent = wait_for_message_status(&app, "sent").await;
    assert_eq!(sent["channel"], "voice");
    assert_eq!(sent["provider_sid"], CALL_SID);

    let completed = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("CallStatus", "completed"),
        ("From", VOICE_FROM),
        ("To", TO),
    ];
    assert_eq!(post_callback(&app, &completed, None).await, 403);
    assert_eq!(
        post_callback(&app, &completed, Some("bm90IGEgc2lnbmF0dXJl")).await,
        403
    );
    assert_eq!(the_message(&app).await["status"], "sent", "nothing changed");

    let signature = twilio_signature(CALLBACK_URL, &completed);
    assert_eq!(post_callback(&app, &completed, Some(&signature)).await, 200);
    assert_eq!(the_message(&app).await["status"], "delivered");

    let id = started["id"].as_str().unwrap();
    let (status, checked) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["status"], "approved");
}

#[tokio::test]
async fn an_unanswered_call_is_undelivered_with_the_reason() {
    let app = TestApp::spawn_with(&[
        ("TWILIO_VOICE_FROM", VOICE_FROM),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
    ])
    .await;
    twilio_places_calls(&app).await;
    let (status, started) = app
        .post("/v1/verifications", json!({"to": TO, "channel": "voice"}))
        .await;
    assert_eq!(status, 201, "{started}");
    wait_for_message_status(&app, "sent").await;

    let no_answer = [
        ("CallSid", CALL_SID),
        ("CallStatus", "no-answer"),
        ("To", TO),
    ];
    let signature = twilio_signature(CALLBACK_URL, &no_answer);
    assert_eq!(post_callback(&app, &no_answer, Some(&signature)).await, 200);

    let message = the_message(&app).await;
    assert_eq!(message["status"], "undelivered");
    assert_eq!(message["error_message"], "nobody answered the call");
}

#[tokio::test]
async fn voice_without_a_number_to_call_from_is_refused_and_messages_never_call() {
    let app = TestApp::spawn().await;

    let (status, problem) = app
        .post("/v1/verifications", json!({"to": TO, "channel": "voice"}))
        .await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "channel");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("channel-not-offered"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("TWILIO_VOICE_FROM"),
        "{problem}"
    );
    let (status, problem) = app
        .post(
            "/v1/messages",
            json!({"to": TO, "channel": "voice", "body": "Hello"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "channel");
    let (_, page) = app.get("/v1/messages").await;
    assert_eq!(page["messages"], json!([]), "nothing was queued");
}

fn whatsapp_templates() -> String {
    format!("en:{EN_TEMPLATE},fr:{FR_TEMPLATE}")
}

#[tokio::test]
async fn a_whatsapp_code_goes_with_its_locales_approved_template_and_the_code_as_variable() {
    let templates = whatsapp_templates();
    let app = TestApp::spawn_with(&[
        ("TWILIO_WHATSAPP_CONTENT_SIDS", &templates),
        ("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM),
    ])
    .await;
    let to = format!("whatsapp:{TO}");
    let from = format!("whatsapp:{WHATSAPP_FROM}");
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[("To", &to), ("From", &from), ("ContentSid", FR_TEMPLATE)])
                .field_where("ContentVariables", |variables| {
                    let variables: Value = serde_json::from_str(variables).unwrap();
                    let code = variables["1"].as_str().unwrap_or_default();
                    variables.as_object().unwrap().len() == 1
                        && code.len() == 6
                        && code.chars().all(|c| c.is_ascii_digit())
                })
                .any("ValidityPeriod"),
        )
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
            "num_segments": "1", "price": null, "price_unit": "USD"
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({"to": TO, "channel": "whatsapp", "locale": "fr-CA"}),
        )
        .await;

    assert_eq!(status, 201, "{started}");
    assert_eq!(started["locale"], "fr");
    let variables = app.twilio_requests(1).await[0]["ContentVariables"].clone();
    let code = serde_json::from_str::<Value>(&variables).unwrap()["1"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_message_status(&app, "sent").await;
    let id = started["id"].as_str().unwrap();
    let (_, checked) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(checked["status"], "approved");
}

#[tokio::test]
async fn a_63016_from_whatsapp_fails_the_code_at_once() {
    let templates = whatsapp_templates();
    let app = TestApp::spawn_with(&[("TWILIO_WHATSAPP_CONTENT_SIDS", &templates)]).await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 63016,
            "message": "Failed to send freeform message because you are outside the allowed window",
            "more_info": "https://www.twilio.com/docs/errors/63016",
            "status": 400
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({"to": TO, "channel": "whatsapp"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");

    let failed = wait_for_message_status(&app, "failed").await;
    assert_eq!(failed["error_code"], "63016");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed["attempts"][0]["outcome"], "permanent_error");
}

#[tokio::test]
async fn a_whatsapp_verification_without_a_template_for_its_language_or_english_is_refused() {
    let french_only = format!("fr:{FR_TEMPLATE}");
    let app = TestApp::spawn_with(&[("TWILIO_WHATSAPP_CONTENT_SIDS", &french_only)]).await;

    let (status, problem) = app
        .post(
            "/v1/verifications",
            json!({"to": TO, "channel": "whatsapp", "locale": "de"}),
        )
        .await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "channel");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("TWILIO_WHATSAPP_CONTENT_SIDS") && detail.contains("de"),
        "{detail}"
    );
    let (_, page) = app.get("/v1/messages").await;
    assert_eq!(page["messages"], json!([]), "nothing was queued");
}
