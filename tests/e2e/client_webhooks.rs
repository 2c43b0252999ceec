//! Signed webhooks to client services, received by a local receiver (allowed by
//! `WEBHOOK_ALLOW_PRIVATE`) and verified here with an implementation of the Standard Webhooks
//! specification written from the specification, not the service's own signing code.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ports::VerificationStore as _;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{code_in, TestApp, API_KEY};

const OTHER_KEY: &str = "other-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const HOOK_PATH: &str = "/hooks/sms-notify";

/// The specification's check: the signed content is `{id}.{timestamp}.{body}`, the key the
/// base64 decoding of the secret after `whsec_`, the signature HMAC-SHA256 in base64 behind
/// `v1,`; the header holds one or more space-separated signatures, any one of which may match.
fn verifies(secret: &str, request: &Request) -> bool {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a secret is base64 after whsec_");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    header("webhook-signature")
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .any(|signature| signature == expected)
}

fn header(request: &Request, name: &str) -> String {
    request.headers[name].to_str().unwrap().to_owned()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// A receiver answering 200 to every post.
async fn receiver() -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    receiver
}

/// Waits until `receiver` has had `count` posts, and returns them.
async fn received(receiver: &MockServer, count: usize) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let requests = receiver.received_requests().await.unwrap_or_default();
        if requests.len() >= count {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver got {} posts, expected {count}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register(app: &TestApp, receiver: &MockServer, events: &[&str]) -> Value {
    let (status, endpoint) = app
        .post(
            "/v1/webhook-endpoints",
            json!({
                "url": format!("{}{HOOK_PATH}", receiver.uri()),
                "events": events,
                "description": "auth service",
            }),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    endpoint
}

/// Starts and cancels a verification of `to`: one `verification.canceled` event.
async fn canceled(app: &TestApp, to: &str) -> String {
    let (status, verification) = app.post("/v1/verifications", json!({ "to": to })).await;
    assert_eq!(status, 201, "{verification}");
    let id = verification["id"].as_str().unwrap().to_owned();
    let (status, canceled) = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{canceled}");
    id
}

fn private_allowed() -> [(&'static str, &'static str); 1] {
    [("WEBHOOK_ALLOW_PRIVATE", "true")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_events_reach_a_local_receiver_and_verify_under_the_specification() {
    let app = TestApp::spawn_with(&private_allowed()).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = receiver().await;
    let endpoint = register(&app, &receiver, &["verification.approved", "message.sent"]).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    assert!(BASE64.decode(&secret[6..]).unwrap().len() >= 24);
    assert_eq!(
        endpoint["events"],
        json!(["verification.approved", "message.sent"])
    );
    // The secret is shown once: reading the endpoint again does not show it.
    let id = endpoint["id"].as_str().unwrap();
    let (_, read) = app.get(&format!("/v1/webhook-endpoints/{id}")).await;
    assert_eq!(read["url"], endpoint["url"]);
    assert!(read.get("secret").is_none(), "{read}");

    let (_, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    let verification_id = verification["id"].as_str().unwrap();
    let code = code_in(&app.twilio_requests(1).await[0]["Body"]);
    let (_, check) = app
        .post(
            &format!("/v1/verifications/{verification_id}/check"),
            json!({ "code": code }),
        )
        .await;
    assert_eq!(check["status"], "approved");

    let requests = received(&receiver, 2).await;
    let mut by_type: HashMap<String, &Request> = HashMap::new();
    for request in &requests {
        assert!(verifies(&secret, request), "a signature does not verify");
        assert!(!verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", request));
        assert_eq!(header(request, "content-type"), "application/json");
        let timestamp: i64 = header(request, "webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
        let event = body(request);
        assert_eq!(event["id"], header(request, "webhook-id"));
        // Never the code, anywhere in an event.
        assert!(
            !String::from_utf8_lossy(&request.body).contains(&code),
            "{event}"
        );
        by_type.insert(event["type"].as_str().unwrap().to_owned(), request);
    }
    let approved = body(by_type["verification.approved"]);
    assert_eq!(approved["sequence"], 1);
    assert_eq!(approved["data"]["id"], verification_id);
    assert_eq!(approved["data"]["status"], "approved");
    assert_eq!(approved["data"]["to"], "+1555***4567");
    let sent = body(by_type["message.sent"]);
    assert_eq!(sent["data"]["status"], "sent");
    assert_eq!(
        sent["data"]["provider_sid"],
        "SM00000000000000000000000000000001"
    );
    assert!(sent["data"]["template"]
        .as_str()
        .unwrap()
        .starts_with("two-factor-auth"));
    assert!(sent["data"].get("body").is_none(), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_its_first_three_deliveries_gets_every_event_exactly_once() {
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_SCHEDULE", "0,100ms,100ms,100ms,100ms"),
    ])
    .await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let endpoint = register(&app, &receiver, &["verification.canceled"]).await;
    let secret = endpoint["secret"].as_str().unwrap();

    let mut verifications = HashSet::new();
    for to in [
        "+15551230001",
        "+15551230002",
        "+15551230003",
        "+15551230004",
    ] {
        verifications.insert(canceled(&app, to).await);
    }

    let requests = received(&receiver, 4 + 3).await;
    // Nothing more comes: each event was accepted once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let requests_later = receiver.received_requests().await.unwrap();
    assert_eq!(requests_later.len(), requests.len(), "more posts came");
    assert_eq!(requests.len(), 7);
    let ids: HashSet<String> = requests
        .iter()
        .map(|request| header(request, "webhook-id"))
        .collect();
    assert_eq!(ids.len(), 4);
    let objects: HashSet<String> = requests
        .iter()
        .map(|request| body(request)["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(objects, verifications);
    assert!(requests.iter().all(|request| verifies(secret, request)));
}

/// The deliverer's poll, set to a minute: only a wake-up brings an event within seconds.
const SLOW_POLL: (&str, &str) = ("WEBHOOK_POLL_INTERVAL_MS", "60000");
/// Far less than the slow poll, and far more than a wake-up takes on a busy machine.
const WOKEN_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_leaves_at_once_and_not_at_the_deliverers_next_poll() {
    let app = TestApp::spawn_with(&[("WEBHOOK_ALLOW_PRIVATE", "true"), SLOW_POLL]).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = receiver().await;
    register(&app, &receiver, &["verification.canceled"]).await;
    // The deliverer looked when the service started, and its next poll is a minute away.
    for (n, to) in ["+15551230001", "+15551230002", "+15551230003"]
        .into_iter()
        .enumerate()
    {
        let started = Instant::now();
        let id = canceled(&app, to).await;
        let requests = received(&receiver, n + 1).await;
        let waited = started.elapsed();
        assert!(waited < WOKEN_WITHIN, "event {n} took {waited:?}");
        assert_eq!(body(&requests[n])["data"]["id"], id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_another_instance_records_leaves_from_this_one_at_once() {
    let app =
        TestApp::spawn_on_postgres_with(&[("WEBHOOK_ALLOW_PRIVATE", "true"), SLOW_POLL]).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = receiver().await;
    register(&app, &receiver, &["verification.canceled"]).await;
    // Another instance, reduced to its store: it has no deliverer, so the event it records
    // leaves from the service, woken through PostgreSQL.
    let other = app.database().store().await;
    let (status, verification) = app
        .post("/v1/verifications", json!({ "to": "+15551230001" }))
        .await;
    assert_eq!(status, 201, "{verification}");
    let id = verification["id"].as_str().unwrap().to_owned();
    // The service listens from its start; its first sends and looks are over by now.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let canceled = other
        .conclude(
            domain::VerificationId::from_uuid(id.parse().unwrap()),
            domain::VerificationStatus::Canceled,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(canceled);
    let requests = received(&receiver, 1).await;
    let waited = started.elapsed();
    assert!(waited < WOKEN_WITHIN, "the event took {waited:?}");
    let event = body(&requests[0]);
    assert_eq!(event["type"], "verification.canceled");
    assert_eq!(event["data"]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_sends_every_event_since_a_time_again() {
    let app = TestApp::spawn_with(&private_allowed()).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = receiver().await;
    let endpoint = register(&app, &receiver, &["verification.canceled"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let before = chrono::Utc::now();
    canceled(&app, "+15551230001").await;
    canceled(&app, "+15551230002").await;
    let first = received(&receiver, 2).await;

    let (status, replay) = app
        .post(
            &format!("/v1/webhook-endpoints/{id}/replay"),
            json!({ "since": before.to_rfc3339() }),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["queued"], 2);
    let all = received(&receiver, 4).await;
    let first_ids: HashSet<_> = first.iter().map(|r| header(r, "webhook-id")).collect();
    let again: HashSet<_> = all[2..].iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(again, first_ids, "the same events, by the same ids");
    // The same data too.
    let body_of = |requests: &[Request], id: &str| {
        requests
            .iter()
            .find(|r| header(r, "webhook-id") == id)
            .map(body)
            .unwrap()
    };
    for id in &first_ids {
        assert_eq!(body_of(&first, id), body_of(&all[2..], id));
    }

    let (status, none) = app
        .post(
            &format!("/v1/webhook-endpoints/{id}/replay"),
            json!({ "since": chrono::Utc::now().to_rfc3339() }),
        )
        .await;
    assert_eq!((status, none["queued"].clone()), (202, json!(0)));
}

#[tokio::test]
async fn an_endpoint_on_a_private_address_or_plain_http_is_refused() {
    let app = TestApp::spawn().await;
    for url in [
        "https://127.0.0.1/hooks",
        "https://10.0.0.8/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://localhost/hooks",
        "http://hooks.example.com/hooks",
        "ftp://hooks.example.com/hooks",
        "not a url",
    ] {
        let (status, problem) = app
            .post(
                "/v1/webhook-endpoints",
                json!({"url": url, "events": ["message.delivered"]}),
            )
            .await;
        assert_eq!(status, 422, "{url}: {problem}");
        assert_eq!(problem["field"], "url", "{url}: {problem}");
        assert_eq!(problem["type"], "invalid-webhook-url", "{url}: {problem}");
    }
    let (status, problem) = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": "https://93.184.216.34/hooks", "events": ["message.opened"]}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let (status, problem) = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": "https://93.184.216.34/hooks", "events": []}),
        )
        .await;
    assert_eq!((status, problem["field"].clone()), (422, json!("events")));
    let (_, list) = app.get("/v1/webhook-endpoints").await;
    assert_eq!(list["endpoints"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_secret_signs_beside_the_old_one() {
    let app = TestApp::spawn_with(&private_allowed()).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = receiver().await;
    let endpoint = register(&app, &receiver, &["verification.canceled"]).await;
    let id = endpoint["id"].as_str().unwrap();
    let old = endpoint["secret"].as_str().unwrap();

    let (status, rotated) = app
        .post(
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );

    canceled(&app, "+15551230001").await;
    let request = &received(&receiver, 1).await[0];
    let signatures = header(request, "webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(signatures.split(' ').all(|s| s.starts_with("v1,")));
    assert!(verifies(new, request));
    assert!(verifies(old, request));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_answering_410_is_disabled() {
    let app = TestApp::spawn_with(&private_allowed()).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&receiver)
        .await;
    let endpoint = register(&app, &receiver, &["verification.canceled"]).await;
    let id = endpoint["id"].as_str().unwrap();
    canceled(&app, "+15551230001").await;
    received(&receiver, 1).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, read) = app.get(&format!("/v1/webhook-endpoints/{id}")).await;
        if read["enabled"] == false {
            assert_eq!(read["disabled_reason"], "gone");
            break;
        }
        assert!(Instant::now() < deadline, "still enabled: {read}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    canceled(&app, "+15551230002").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.iter().any(|line| line
            .starts_with("sms_notify_webhook_endpoints_disabled_total{reason=\"gone\"} 1")),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_client_key_sees_only_its_endpoints_and_an_admin_key_all() {
    let keys = format!("auth:{API_KEY},shop:{OTHER_KEY}");
    let admins = format!("ops:{ADMIN_KEY}");
    let app = TestApp::spawn_with(&[
        ("API_KEYS", &keys),
        ("ADMIN_API_KEYS", &admins),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let receiver = receiver().await;
    let mine = register(&app, &receiver, &["message.delivered"]).await;
    let mine_id = mine["id"].as_str().unwrap();
    let (status, theirs) = app
        .send_as(
            OTHER_KEY,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(
                json!({"url": format!("{}/theirs", receiver.uri()), "events": ["message.failed"]}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");

    let (_, listed) = app.get("/v1/webhook-endpoints").await;
    let listed: Vec<_> = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(listed, [mine["id"].clone()]);
    let path = format!("/v1/webhook-endpoints/{mine_id}");
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = app.send_as(OTHER_KEY, method, &path, None).await;
        assert_eq!(status, 404);
    }
    let (status, _) = app
        .send_as(
            OTHER_KEY,
            Method::PATCH,
            &path,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 404);

    let (_, all) = app
        .send_as(ADMIN_KEY, Method::GET, "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(all["endpoints"].as_array().unwrap().len(), 2, "{all}");

    let (status, changed) = app
        .send_as(
            API_KEY,
            Method::PATCH,
            &path,
            Some(json!({"events": ["message.sent", "message.delivered"], "description": null})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["events"],
        json!(["message.sent", "message.delivered"])
    );
    assert_eq!(changed["description"], Value::Null);
    let (status, _) = app.send_as(API_KEY, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&path).await;
    assert_eq!(status, 404);
}
