//! The dispatcher inside one instance: retries through Twilio's failure modes, and how fast an
//! idle dispatcher picks up a one-time code.

use std::time::{Duration, Instant};

use domain::NewMessage;
use ports::testkit::notification;
use ports::MessageStore;
use serde_json::json;
use wiremock::matchers::{basic_auth, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::fake_twilio::{form_fields, messages_post, Recorder};
use crate::support::{TestApp, ACCOUNT_SID, AUTH_TOKEN, FROM, MESSAGES_PATH};

/// Far below the 30 s safety-net poll that `TestApp` configures.
const WAKE_UP_PATIENCE: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_message_rides_out_500_then_429_then_a_timeout_and_ends_sent_with_every_attempt() {
    let app = TestApp::spawn_with(&[
        ("RETRY_BASE_MS", "10"),
        ("TWILIO_REQUEST_TIMEOUT_MS", "500"),
    ])
    .await;
    let fields = || {
        form_fields(
            &[("To", "+15551234567"), ("From", FROM), ("Body", "Hello")],
            &[],
        )
    };
    messages_post(fields())
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "code": 20500, "message": "Internal Server Error", "status": 500
        })))
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.twilio)
        .await;
    messages_post(fields())
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({
                    "code": 20429, "message": "Too Many Requests", "status": 429
                })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.twilio)
        .await;
    messages_post(fields())
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.twilio)
        .await;
    // The timeout may have sent it: Twilio's list is asked first, and shows nothing.
    Mock::given(method("GET"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(query_param("To", "+15551234567"))
        .and(query_param("From", FROM))
        .and(query_param("PageSize", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "messages": [] })))
        .expect(1)
        .mount(&app.twilio)
        .await;
    messages_post(fields())
        .respond_with(Recorder::new(Duration::ZERO))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "Hello"}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    let sent = app
        .wait_for_status(message["id"].as_str().unwrap(), "sent")
        .await;

    let attempts = sent["attempts"].as_array().unwrap();
    let summary: Vec<_> = attempts
        .iter()
        .map(|attempt| {
            (
                attempt["number"].as_u64().unwrap(),
                attempt["outcome"].as_str().unwrap(),
                attempt["http_status"].as_u64(),
                attempt["error_code"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "retryable_error", Some(500), Some("20500")),
            (2, "retryable_error", Some(429), Some("20429")),
            (3, "ambiguous", None, None),
            (4, "sent", None, None),
        ]
    );
    // Retry-After (1 s) outweighed the 20 ms backoff ceiling of the second attempt.
    let after_429 = chrono_gap(&attempts[1]["finished_at"], &attempts[2]["started_at"]);
    assert!(after_429 >= chrono::TimeDelta::seconds(1), "{after_429}");
    assert_eq!(sent["provider_sid"], "SM00000000000000000000000000000000");
}

fn chrono_gap(from: &serde_json::Value, to: &serde_json::Value) -> chrono::TimeDelta {
    let parse = |value: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
    };
    parse(to) - parse(from)
}

/// Sends one message and waits until it is sent, so that the dispatcher is idle again.
async fn let_the_dispatcher_go_idle(app: &TestApp, recorder: &Recorder) {
    let (_, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "warm-up"}),
        )
        .await;
    app.wait_for_status(message["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(recorder.count(), 1);
}

#[tokio::test]
async fn a_code_reaches_twilio_at_once_while_the_dispatcher_idles() {
    let app = TestApp::spawn_on_postgres().await;
    let recorder = Recorder::new(Duration::ZERO);
    messages_post(form_fields(
        &[("To", "+15551234567"), ("From", FROM)],
        &["Body", "ValidityPeriod"],
    ))
    .respond_with(recorder.clone())
    .expect(1)
    .mount(&app.twilio)
    .await;
    messages_post(form_fields(
        &[("To", "+15551234567"), ("From", FROM), ("Body", "warm-up")],
        &[],
    ))
    .respond_with(recorder.clone())
    .expect(1)
    .mount(&app.twilio)
    .await;
    let_the_dispatcher_go_idle(&app, &recorder).await;

    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    let answered = Instant::now();
    assert_eq!(status, 201, "{verification}");
    recorder.wait_for(2, WAKE_UP_PATIENCE).await;

    let (arrived, body) = recorder
        .arrivals()
        .into_iter()
        .max_by_key(|(at, _)| *at)
        .unwrap();
    assert!(body.contains("verification code"), "{body}");
    println!(
        "wake-up: the code reached Twilio {:.1} ms after the API answered (poll: 30 s)",
        arrived.saturating_duration_since(answered).as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn a_message_queued_by_another_instance_wakes_this_one_through_postgres() {
    let app = TestApp::spawn_on_postgres().await;
    let recorder = Recorder::new(Duration::ZERO);
    messages_post(form_fields(
        &[("To", "+15551234567"), ("From", FROM)],
        &["Body"],
    ))
    .respond_with(recorder.clone())
    .expect(2)
    .mount(&app.twilio)
    .await;
    let_the_dispatcher_go_idle(&app, &recorder).await;

    // Another instance's store: this instance's in-process signal does not fire.
    let elsewhere = app.database().store().await;
    let queued = NewMessage {
        body: "queued elsewhere".into(),
        ..notification(chrono::Utc::now())
    };
    elsewhere.enqueue(queued).await.unwrap();
    let enqueued = Instant::now();
    recorder.wait_for(2, WAKE_UP_PATIENCE).await;

    let (arrived, body) = recorder
        .arrivals()
        .into_iter()
        .max_by_key(|(at, _)| *at)
        .unwrap();
    assert_eq!(body, "queued elsewhere");
    println!(
        "wake-up through NOTIFY: {:.1} ms from commit to Twilio (poll: 30 s)",
        arrived.saturating_duration_since(enqueued).as_secs_f64() * 1e3
    );
}
