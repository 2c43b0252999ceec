//! What the adapter logs: the masked number and ids, never the body, the full number or a
//! secret.

use std::io;
use std::sync::{Arc, Mutex};

use ports::SmsProvider;
use wiremock::{MockServer, ResponseTemplate};

use crate::{created_json, default_post, error_json, provider_for, sms, AUTH_TOKEN, MESSAGE_SID};

#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Collects what is logged on this thread until the guard is dropped.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

#[tokio::test]
async fn a_sent_message_is_logged_masked_with_its_sid_and_without_its_body() {
    let server = MockServer::start().await;
    default_post("Your code is 987654")
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    let mut message = sms("Your code is 987654");
    message.sensitive = true;
    let logs = CapturedLogs::default();
    let guard = logs.install();

    provider.send(&message).await.unwrap();

    drop(guard);
    let text = logs.text();
    assert!(text.contains("SMS sent successfully"), "{text}");
    assert!(text.contains("+1555***4567"), "{text}");
    assert!(text.contains(&message.message_id.to_string()), "{text}");
    assert!(text.contains(MESSAGE_SID), "{text}");
    assert!(!text.contains("987654"), "{text}");
    assert!(!text.contains("+15551234567"), "{text}");
    assert!(!text.contains(AUTH_TOKEN), "{text}");
}

#[tokio::test]
async fn a_failed_send_is_logged_with_the_code_but_not_twilios_message_quoting_the_number() {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(ResponseTemplate::new(400).set_body_json(error_json(
            400,
            21211,
            "The 'To' number +15551234567 is not a valid phone number.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider_for(&server);
    let logs = CapturedLogs::default();
    let guard = logs.install();

    provider.send(&sms("hi")).await.unwrap_err();

    drop(guard);
    let text = logs.text();
    assert!(text.contains("Failed to send SMS via Twilio"), "{text}");
    assert!(text.contains("21211"), "{text}");
    assert!(text.contains("+1555***4567"), "{text}");
    assert!(!text.contains("+15551234567"), "{text}");
    assert!(!text.contains(AUTH_TOKEN), "{text}");
}
