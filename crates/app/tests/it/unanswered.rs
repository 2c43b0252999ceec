//! Sends whose outcome never came back: a worker that dies holding its claim (a provider
//! double that panics), and a Twilio that accepts a message but answers after the client gave
//! up (wiremock). The dispatcher runs for real against SQLite, with short leases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adapters_sqlite::SqliteStore;
use adapters_twilio::{TwilioConfig, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use app::dispatch::dispatcher::Dispatcher;
use app::usecases::codes::SystemClock;
use app::wiring::config::DispatchConfig;
use async_trait::async_trait;
use chrono::Utc;
use domain::{
    AttemptOutcome, Channel, CodeHash, Message, MessageId, MessageStatus, NewMessage, PhoneNumber,
    Priority, RetryPolicy, Verification, VerificationPolicy,
};
use ports::{
    Clock, MessageStore, OutboundMessage, ProviderError, ProviderReceipt, SmsProvider,
    VerificationStore,
};
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::{watch, Notify};
use wiremock::matchers::{basic_auth, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-token";
const FROM: &str = "+15005550006";
const TO: &str = "+15551234567";
const SID: &str = "SM0123456789abcdef0123456789abcdef";

fn config(max_attempts: u32, lease: Duration) -> DispatchConfig {
    DispatchConfig {
        concurrency: 4,
        poll_interval: Duration::from_millis(100),
        lease,
        retry: RetryPolicy {
            max_attempts,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
        },
        sender_mps: None,
        shutdown_grace: Duration::from_secs(1),
    }
}

/// Runs `dispatcher` until `message` reaches a status other than queued or sending (10 s at
/// most), then stops it and returns the message.
async fn dispatch_until_settled(
    store: &Arc<SqliteStore>,
    dispatcher: Dispatcher,
    message: MessageId,
) -> Message {
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(dispatcher.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let settled = loop {
        let current = MessageStore::get(store.as_ref(), message)
            .await
            .unwrap()
            .unwrap();
        if !matches!(
            current.status,
            MessageStatus::Queued | MessageStatus::Sending
        ) {
            break current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after 10 s",
            current.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    running.await.unwrap();
    settled
}

/// A provider whose every call kills its worker between the call and the recording.
#[derive(Default)]
struct Panicking {
    calls: AtomicUsize,
}

#[async_trait]
impl SmsProvider for Panicking {
    fn name(&self) -> &'static str {
        "panicking"
    }

    async fn send(&self, _: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        panic!("the worker dies with the message in flight");
    }
}

#[tokio::test]
async fn a_message_whose_worker_keeps_dying_fails_after_retry_max_attempts_with_its_lost_attempts()
{
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let message = store
        .enqueue(NewMessage {
            id: MessageId::generate(),
            to: PhoneNumber::parse(TO).unwrap(),
            channel: Channel::Sms,
            template: None,
            body: "Your order has shipped".into(),
            locale: None,
            content_sid: None,
            segments: 1,
            priority: Priority::Normal,
            api_key: "shop".into(),
            idempotency_key: None,
            idempotency_fingerprint: None,
            verification_id: None,
            send_before: None,
            request_id: None,
            traceparent: None,
            sensitive: false,
            created_at: Utc::now(),
        })
        .await
        .unwrap()
        .into_message();
    let provider = Arc::new(Panicking::default());
    let dispatcher = Dispatcher::new(
        store.clone(),
        provider.clone(),
        Arc::new(SystemClock),
        config(3, Duration::from_millis(300)),
        FROM.into(),
        Arc::new(Notify::new()),
    );

    let failed = dispatch_until_settled(&store, dispatcher, message.id).await;

    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("the worker sending it was lost 3 times")
    );
    assert_eq!(
        provider.calls.load(Ordering::SeqCst),
        3,
        "sent 3 times, no more"
    );
    let attempts = store.attempts(message.id).await.unwrap();
    let summary: Vec<(u32, AttemptOutcome)> = attempts
        .iter()
        .map(|attempt| (attempt.number, attempt.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (1, AttemptOutcome::Lost),
            (2, AttemptOutcome::Lost),
            (3, AttemptOutcome::Lost)
        ]
    );
}

fn twilio_for(server: &MockServer) -> Arc<TwilioSmsProvider> {
    Arc::new(
        TwilioSmsProvider::new(TwilioConfig {
            base_url: server.uri().parse().unwrap(),
            account_sid: ACCOUNT_SID.into(),
            credentials: TwilioCredentials::AuthToken(SecretString::from(AUTH_TOKEN)),
            sender: TwilioSender::From(PhoneNumber::parse(FROM).unwrap()),
            voice_from: None,
            whatsapp_from: None,
            status_callback_url: None,
            connect_timeout: Duration::from_secs(2),
            // Shorter than Twilio's delay below: the request is written, the answer never read.
            request_timeout: Duration::from_millis(300),
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn a_code_twilio_accepted_without_answering_is_adopted_from_its_list_and_not_sent_twice() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let twilio = MockServer::start().await;
    let now = SystemClock.now();
    let verification = Verification::start(
        PhoneNumber::parse(TO).unwrap(),
        Channel::Sms,
        "auth".into(),
        &VerificationPolicy::default(),
        now,
    );
    let body = "Your code is 402913";
    let code = store
        .create(
            &verification,
            CodeHash::from_bytes(vec![7; 32]),
            NewMessage {
                id: MessageId::generate(),
                to: verification.to.clone(),
                channel: Channel::Sms,
                template: Some("two-factor-auth".into()),
                body: body.into(),
                locale: None,
                content_sid: None,
                segments: 1,
                priority: Priority::Verification,
                api_key: "auth".into(),
                idempotency_key: None,
                idempotency_fingerprint: None,
                verification_id: Some(verification.id),
                send_before: Some(verification.expires_at),
                request_id: None,
                traceparent: None,
                sensitive: true,
                created_at: now,
            },
            None,
        )
        .await
        .unwrap();
    let messages = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    // Twilio takes the message but answers too late; a second POST would send it twice.
    Mock::given(method("POST"))
        .and(path(messages.as_str()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "sid": SID, "status": "queued" }))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(messages.as_str()))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(query_param("To", TO))
        .and(query_param("From", FROM))
        .and(query_param("PageSize", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{
                "sid": SID, "body": body, "status": "queued", "from": FROM, "to": TO,
                "date_created": now.format("%a, %d %b %Y %H:%M:%S +0000").to_string(),
                "date_sent": null, "num_segments": "1", "price": null, "price_unit": "USD"
            }],
            "page": 0, "page_size": 50, "next_page_uri": null
        })))
        .expect(1)
        .mount(&twilio)
        .await;
    let provider = twilio_for(&twilio);
    let dispatcher = Dispatcher::new(
        store.clone(),
        provider.clone(),
        Arc::new(SystemClock),
        // Longer than the call: its outcome is recorded before another claim could take it.
        config(3, Duration::from_secs(2)),
        FROM.into(),
        Arc::new(Notify::new()),
    )
    .with_sent_message_search(provider);

    let sent = dispatch_until_settled(&store, dispatcher, code.id).await;

    assert_eq!(sent.status, MessageStatus::Sent);
    assert_eq!(sent.provider_sid.as_deref(), Some(SID));
    let attempts = MessageStore::attempts(store.as_ref(), code.id)
        .await
        .unwrap();
    let summary: Vec<(u32, AttemptOutcome, Option<&str>)> = attempts
        .iter()
        .map(|attempt| (attempt.number, attempt.outcome, attempt.provider.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, AttemptOutcome::Ambiguous, Some("twilio")),
            (2, AttemptOutcome::Adopted, Some("twilio"))
        ]
    );
    twilio.verify().await;
}
