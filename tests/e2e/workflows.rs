//! Fallback workflows end to end: a verification asked for on `["sms", "voice"]` calls with a
//! new code once Twilio reports the SMS undelivered, or once no code approved within its delay,
//! and a second instance continues the workflow of one that was killed. Twilio is wiremock,
//! each request held to its whole form (the SMS's and the call's fields as Twilio's API
//! description names them), each expected exactly once.

use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use wiremock_form::Form;

use crate::channels::{post_callback, spoken_code, twilio_signature};
use crate::service::{shared_env, Service};
use crate::support::{TestApp, TestClock, ACCOUNT_SID, API_KEY, AUTH_TOKEN, FROM, MESSAGES_PATH};

const TO: &str = "+447700900123";
const VOICE_FROM: &str = "+15005550009";
const CALLS_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";
const SMS_SID: &str = "SM0123456789abcdef0123456789abcd01";
const CALL_SID: &str = "CA0123456789abcdef0123456789abcd02";
const PUBLIC_BASE_URL: &str = "https://notify.example.com";
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";

fn variables() -> [(&'static str, &'static str); 2] {
    [
        ("TWILIO_VOICE_FROM", VOICE_FROM),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
    ]
}

/// The code's SMS, exactly once: To, From, the code's text, its validity, the callback.
async fn twilio_sends_the_sms(twilio: &MockServer) {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[("To", TO), ("From", FROM), ("StatusCallback", CALLBACK_URL)])
                .field_where("Body", |body| {
                    body.starts_with("Your Smarter Firms verification code is: ")
                })
                .any("ValidityPeriod"),
        )
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": SMS_SID, "status": "queued", "num_segments": "1", "price": null,
            "price_unit": "USD", "error_code": null, "error_message": null
        })))
        .expect(1)
        .mount(twilio)
        .await;
}

/// The fallback's call, exactly once: To, From (the voice number), the TwiML, the callback.
async fn twilio_places_the_call(twilio: &MockServer) {
    Mock::given(method("POST"))
        .and(path(CALLS_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[
                ("To", TO),
                ("From", VOICE_FROM),
                ("StatusCallback", CALLBACK_URL),
            ])
            .field_where("Twiml", |twiml| {
                twiml.starts_with("<?xml") && twiml.ends_with("</Response>")
            }),
        )
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": CALL_SID, "status": "queued", "price": null, "price_unit": "USD"
        })))
        .expect(1)
        .mount(twilio)
        .await;
}

/// The requests Twilio received to `path`, once there are `count`, as form fields.
async fn requests_to(
    twilio: &MockServer,
    path: &str,
    count: usize,
    patience: Duration,
) -> Vec<std::collections::HashMap<String, String>> {
    let deadline = Instant::now() + patience;
    loop {
        let requests: Vec<_> = twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|request| request.url.path() == path)
            .collect();
        if requests.len() >= count {
            return requests.iter().map(wiremock_form::fields).collect();
        }
        assert!(
            Instant::now() < deadline,
            "Twilio received {} requests to {path}, expected {count}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the verification until its attempts number `count` and the last one is `status`.
async fn wait_for_attempts(app: &TestApp, id: &str, count: usize, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, verification) = app.get(&format!("/v1/verifications/{id}")).await;
        assert_eq!(code, 200, "{verification}");
        let attempts = verification["attempts"].as_array().unwrap();
        if attempts.len() == count && attempts[count - 1]["status"] == status {
            return verification;
        }
        assert!(Instant::now() < deadline, "{verification}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_sms_then_voice(app: &TestApp, fallback_after_seconds: u64) -> Value {
    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({
                "to": TO,
                "channels": ["sms", "voice"],
                "fallback_after_seconds": fallback_after_seconds
            }),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["channel"], "sms");
    assert_eq!(
        started["attempts"].as_array().unwrap().len(),
        1,
        "{started}"
    );
    assert_eq!(started["attempts"][0]["channel"], "sms");
    started
}

fn fallbacks(metrics: &[String], reason: &str) -> Option<String> {
    let series = format!(
        r#"sms_notify_verification_fallbacks_total{{from="sms",to="voice",reason="{reason}"}}"#
    );
    metrics
        .iter()
        .find(|line| line.starts_with(&series))
        .map(|line| line[series.len()..].trim().to_owned())
}

#[tokio::test]
async fn a_workflow_calls_with_a_new_code_once_its_sms_is_reported_undelivered() {
    let app = TestApp::spawn_with(&variables()).await;
    twilio_sends_the_sms(&app.twilio).await;
    twilio_places_the_call(&app.twilio).await;

    // A delay far longer than the test: only the receipt can move the workflow on.
    let started = start_sms_then_voice(&app, 600).await;
    let id = started["id"].as_str().unwrap();
    let sms = requests_to(&app.twilio, MESSAGES_PATH, 1, Duration::from_secs(10)).await;
    let sms_code = crate::support::code_in(&sms[0]["Body"]);
    wait_for_attempts(&app, id, 1, "sent").await;

    let undelivered = [
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", SMS_SID),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("From", FROM),
        ("To", TO),
    ];
    let signature = twilio_signature(CALLBACK_URL, &undelivered);
    assert_eq!(
        post_callback(&app, &undelivered, Some(&signature)).await,
        200
    );

    let call = requests_to(&app.twilio, CALLS_PATH, 1, Duration::from_secs(10)).await;
    let call_code = spoken_code(&call[0]["Twiml"]);
    assert_eq!(call_code.len(), 6);
    assert_ne!(call_code, sms_code, "each step has its own code");
    let verification = wait_for_attempts(&app, id, 2, "sent").await;
    assert_eq!(verification["channel"], "voice");
    assert_eq!(verification["send_count"], 2);
    let attempts = &verification["attempts"];
    assert_eq!(attempts[0]["channel"], "sms");
    assert_eq!(attempts[0]["status"], "undelivered");
    assert_eq!(attempts[0]["provider"], "twilio");
    assert!(attempts[0]["sent_at"].is_string(), "{attempts}");
    assert!(attempts[0]["delivered_at"].is_null(), "{attempts}");
    assert_eq!(attempts[1]["channel"], "voice");

    // The call is answered; its code approves, and the verification says which attempt did.
    let completed = [
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", CALL_SID),
        ("CallStatus", "completed"),
        ("From", VOICE_FROM),
        ("To", TO),
    ];
    let signature = twilio_signature(CALLBACK_URL, &completed);
    assert_eq!(post_callback(&app, &completed, Some(&signature)).await, 200);
    let (status, checked) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": call_code}),
        )
        .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["status"], "approved");
    let (_, verification) = app.get(&format!("/v1/verifications/{id}")).await;
    let attempts = &verification["attempts"];
    assert_eq!(attempts[0]["approved"], false, "{verification}");
    assert_eq!(attempts[1]["approved"], true, "{verification}");
    assert_eq!(attempts[1]["status"], "delivered", "{verification}");
    assert!(attempts[1]["delivered_at"].is_string(), "{verification}");
    assert_eq!(
        fallbacks(&app.metrics().await, "undelivered").as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_workflow_calls_when_no_code_approved_within_its_delay() {
    let clock = TestClock::now_shared();
    let app = TestApp::spawn_on_postgres_with_clock(&variables(), clock.clone()).await;
    twilio_sends_the_sms(&app.twilio).await;
    twilio_places_the_call(&app.twilio).await;

    let started = start_sms_then_voice(&app, 60).await;
    let id = started["id"].as_str().unwrap();
    wait_for_attempts(&app, id, 1, "sent").await;
    // Delivered, but nobody typed the code.
    let delivered = [
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", SMS_SID),
        ("MessageStatus", "delivered"),
        ("From", FROM),
        ("To", TO),
    ];
    let signature = twilio_signature(CALLBACK_URL, &delivered);
    assert_eq!(post_callback(&app, &delivered, Some(&signature)).await, 200);

    clock.advance(chrono::TimeDelta::seconds(59));
    // The workers look every second: two looks, and no call yet.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let calls = requests_to(&app.twilio, CALLS_PATH, 0, Duration::ZERO).await;
    assert!(calls.is_empty(), "called before the delay");

    clock.advance(chrono::TimeDelta::seconds(1));
    requests_to(&app.twilio, CALLS_PATH, 1, Duration::from_secs(10)).await;
    let verification = wait_for_attempts(&app, id, 2, "sent").await;
    assert_eq!(verification["attempts"][0]["status"], "delivered");
    assert!(verification["attempts"][0]["delivered_at"].is_string());
    assert_eq!(
        fallbacks(&app.metrics().await, "timeout").as_deref(),
        Some("1")
    );
}

async fn get_verification(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/verifications/{id}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_started_on_a_killed_instance_is_continued_by_another_and_calls_once() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    twilio_sends_the_sms(&twilio).await;
    twilio_places_the_call(&twilio).await;
    let env = shared_env(&database, &twilio, &variables());
    let first = Service::start(&env).await;
    let client = reqwest::Client::new();
    let started: Value = client
        .post(format!("{}/v1/verifications", first.base))
        .bearer_auth(API_KEY)
        .json(&json!({"to": TO, "channels": ["sms", "voice"], "fallback_after_seconds": 15}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    requests_to(&twilio, MESSAGES_PATH, 1, Duration::from_secs(10)).await;
    let sent_at = Instant::now();
    // Killed once the SMS is recorded sent, so that nothing but the workflow is left to do.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let verification = get_verification(&client, &first.base, &id).await;
        if verification["attempts"][0]["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "{verification}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await;

    let second = Service::start(&env).await;
    // The second instance knows nothing of the first but the database: the step is due 15 s
    // after the SMS, and it alone takes it.
    requests_to(&twilio, CALLS_PATH, 1, Duration::from_secs(30)).await;
    assert!(
        sent_at.elapsed() >= Duration::from_secs(14),
        "called {:?} after the SMS, before the workflow's delay",
        sent_at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let verification = get_verification(&client, &second.base, &id).await;
        let channels: Vec<&str> = verification["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|attempt| attempt["channel"].as_str().unwrap())
            .collect();
        if channels == ["sms", "voice"] && verification["attempts"][1]["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "{verification}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another look or two of the worker: still one call (the mock expects exactly one).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        requests_to(&twilio, CALLS_PATH, 1, Duration::ZERO)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_workflow_request_is_refused_naming_what_is_wrong() {
    let app = TestApp::spawn().await;
    for (body, field, detail) in [
        (
            json!({"to": TO, "channels": ["sms", "sms"]}),
            "channels",
            "channels lists sms twice",
        ),
        (
            json!({"to": TO, "channels": []}),
            "channels",
            "channels lists at least one channel",
        ),
        (
            json!({"to": TO, "channels": ["sms", "whatsapp"], "fallback_after_seconds": 5}),
            "fallback_after_seconds",
            "fallback_after_seconds is 15 to 600, not 5",
        ),
        (
            json!({"to": TO, "channel": "voice", "channels": ["sms", "voice"]}),
            "channel",
            "channel is voice but channels starts with sms: leave channel out, or make it the first of channels",
        ),
        (
            json!({"to": TO, "fallback_after_seconds": 30}),
            "fallback_after_seconds",
            "fallback_after_seconds applies to a workflow: give channels too",
        ),
    ] {
        let (status, problem) = app.post("/v1/verifications", body.clone()).await;
        assert_eq!(status, 422, "{body} -> {problem}");
        assert_eq!(problem["field"], field, "{body} -> {problem}");
        assert_eq!(problem["detail"], detail, "{body} -> {problem}");
    }
    // Without TWILIO_VOICE_FROM no provider calls: the workflow is refused naming voice.
    let (status, problem) = app
        .post(
            "/v1/verifications",
            json!({"to": TO, "channels": ["sms", "voice"]}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "channels");
    assert_eq!(problem["type"], "channel-not-offered");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("voice is not offered"),
        "{problem}"
    );
    assert!(app
        .twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}
