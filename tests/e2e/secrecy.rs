//! What must never leave the service: a one-time code, in any log line or any response, and a
//! whole phone number in the logs; nor outlive its send in the database.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ports::MessageStore;
use serde_json::json;
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{code_in, twilio_send, TestApp, ACCOUNT_SID, AUTH_TOKEN, MESSAGES_PATH};

/// Everything the service logs during the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures what this thread logs, at every level, until the guard is dropped.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits for the line the dispatcher logs once a send's outcome is recorded.
    async fn wait_for_dispatched(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.text().contains("message dispatched") {
            assert!(Instant::now() < deadline, "the send was never recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `code` occurs in `text` as a number of its own, not inside a longer one.
fn contains_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

// One thread, so that the subscriber set for this test sees every task of the service: the
// HTTP handlers, the dispatcher, the Twilio adapter.
#[tokio::test(flavor = "current_thread")]
async fn a_code_never_appears_in_a_log_line_or_a_response() {
    let (logs, _logging) = Captured::install();

    let app = TestApp::spawn_on_postgres().await;
    app.twilio_expects_codes(&["+15551234567"], 1).await;
    let mut responses = String::new();

    // Ten digits: a six-digit code could turn up by chance among the timestamps and ids.
    let (status, started, headers) = app
        .post_raw(
            "/v1/verifications",
            json!({"to": "+15551234567", "code_length": 10}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    responses.push_str(&started);
    responses.push_str(&headers);
    let id = serde_json::from_str::<serde_json::Value>(&started).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = code_in(&app.twilio_requests(1).await[0]["Body"]);
    assert_eq!(code.len(), 10);

    let wrong: String = code
        .chars()
        .map(|digit| if digit == '0' { '1' } else { '0' })
        .collect();
    let check = format!("/v1/verifications/{id}/check");
    for (path, body) in [
        (check.clone(), json!({"code": wrong})),
        (check.clone(), json!({"code": code})),
        (check.clone(), json!({"code": code})),
        (
            "/v1/verification-checks".to_owned(),
            json!({"to": "+15551234567", "code": code}),
        ),
        (format!("/v1/verifications/{id}/cancel"), json!({})),
        (check, json!({"code": "not a code"})),
    ] {
        let (_, body, headers) = app.post_raw(&path, body).await;
        responses.push_str(&body);
        responses.push_str(&headers);
    }
    let (_, verification) = app.get(&format!("/v1/verifications/{id}")).await;
    responses.push_str(&verification.to_string());

    // The dispatcher records the send after Twilio has answered; wait for its last line.
    logs.wait_for_dispatched().await;

    let logged = logs.text();
    assert!(
        logged.contains("verification approved"),
        "the capture holds the service's log"
    );
    // The one line a send leaves names Twilio's SID, the key to its story at Twilio.
    let dispatched = logged
        .lines()
        .find(|line| line.contains("message dispatched"))
        .unwrap_or_default();
    assert!(
        dispatched.contains("SM00000000000000000000000000000099"),
        "{dispatched}"
    );
    assert!(!contains_code(&logged, &code), "a log line holds the code");
    assert!(
        !contains_code(&responses, &code),
        "a response holds the code"
    );
    assert!(
        !logged.contains("+15551234567") && !logged.contains("15551234567"),
        "a log line holds the whole number"
    );
}

// One thread, as above. A client may send a code of its own through the built-in template; the
// template is sensitive, so the code is as protected as one of a verification.
#[tokio::test(flavor = "current_thread")]
async fn a_code_sent_with_a_sensitive_template_is_never_logged_and_leaves_the_database_once_sent() {
    let (logs, _logging) = Captured::install();
    let app = TestApp::spawn_on_postgres().await;
    let code = "4829173056";
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(twilio_send(
            "+15551234567",
            "Your Smarter Firms verification code is: 4829173056. \
                This code will expire in 10 minutes.",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM00000000000000000000000000000098", "status": "queued",
            "num_segments": "1", "price": null, "price_unit": "USD",
            "error_code": null, "error_message": null
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, queued, headers) = app
        .post_raw(
            "/v1/messages",
            json!({"to": "+15551234567", "template": "two-factor-auth",
                "data": {"code": code, "expiryMinutes": 10}}),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let mut responses = queued.clone() + &headers;
    let id = serde_json::from_str::<serde_json::Value>(&queued).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = app.wait_for_status(&id, "sent").await;
    responses.push_str(&sent.to_string());
    let (_, page) = app.get("/v1/messages").await;
    responses.push_str(&page.to_string());
    logs.wait_for_dispatched().await;

    let stored = app
        .database()
        .store()
        .await
        .get(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.sensitive);
    assert_eq!(stored.body, "", "the code is still in the database");
    let logged = logs.text();
    assert!(logged.contains(&id), "the capture holds the service's log");
    assert!(!contains_code(&logged, code), "a log line holds the code");
    assert!(
        !contains_code(&responses, code),
        "a response holds the code"
    );
}

// One thread, as above. A call speaks the code digit by digit: neither the code nor its spoken
// form (`1, 2, 3`) may be logged or answered, and the TwiML that holds it leaves the database.
#[tokio::test(flavor = "current_thread")]
async fn a_code_said_in_a_call_never_appears_in_a_log_line_or_a_response() {
    let (logs, _logging) = Captured::install();
    let app = TestApp::spawn_on_postgres_with(&[("TWILIO_VOICE_FROM", "+15005550009")]).await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json",
        ))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "CA00000000000000000000000000000097", "status": "queued"
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, started, headers) = app
        .post_raw(
            "/v1/verifications",
            json!({"to": "+15551234567", "channel": "voice", "code_length": 10}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let mut responses = started.clone() + &headers;
    let id = serde_json::from_str::<serde_json::Value>(&started).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let twiml = app.twilio_requests(1).await[0]["Twiml"].clone();
    let code = crate::channels::spoken_code(&twiml);
    assert_eq!(code.len(), 10, "{twiml}");
    let spoken = crate::channels::spoken_digits(&code);
    let (_, checked, headers) = app
        .post_raw(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    responses.push_str(&checked);
    responses.push_str(&headers);
    let (_, page) = app.get("/v1/messages").await;
    responses.push_str(&page.to_string());
    logs.wait_for_dispatched().await;

    let logged = logs.text();
    assert!(
        logged.contains("verification approved"),
        "the capture holds the service's log"
    );
    for (what, text) in [("a log line", &logged), ("a response", &responses)] {
        assert!(!contains_code(text, &code), "{what} holds the code");
        assert!(!text.contains(&spoken), "{what} holds the spoken code");
    }
    let message_id = page["messages"][0]["id"].as_str().unwrap();
    let stored = app
        .database()
        .store()
        .await
        .get(message_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, "", "the spoken code is still in the database");
}
