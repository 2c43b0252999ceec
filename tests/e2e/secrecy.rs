//! What must never leave the service: a one-time code, in any log line or any response, and a
//! whole phone number in the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{code_in, TestApp};

/// Everything the service logs during the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
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
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn().await;
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.text().contains("message dispatched") {
        assert!(Instant::now() < deadline, "the send was never recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

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
