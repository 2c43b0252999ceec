//! The abuse and cost guards, seen from a client: allow-list and send limits.

use serde_json::json;

use crate::support::{TestApp, API_KEY};

#[tokio::test]
async fn a_number_outside_the_allowed_countries_is_refused_naming_its_country_for_codes_and_messages(
) {
    let app = TestApp::spawn_with(&[("ALLOWED_COUNTRIES", "US,CA")]).await;
    app.twilio_expects_codes(&["+15551234567"], 1).await;

    let (status, problem) = app
        .post("/v1/verifications", json!({"to": "+44 20 7946 0958"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "country-not-allowed");
    assert_eq!(problem["field"], "to");
    assert_eq!(
        problem["detail"],
        "messages to GB are not allowed; allowed countries: CA, US"
    );

    // Plain messages are held to the same list: it is a cost guard, not only a 2FA one.
    let (status, problem) = app
        .post(
            "/v1/messages",
            json!({"to": "+44 20 7946 0958", "body": "hello"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "country-not-allowed");
    assert_eq!(problem["field"], "to");

    // An allowed number still goes out; the mock's expect(1) fails the test on any other send.
    let (status, _) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201);
    app.twilio_requests(1).await;
}

#[tokio::test]
async fn the_api_key_limit_holds_across_two_instances_on_one_database() {
    let limits = [("VERIFY_SENDS_PER_API_KEY", "3")];
    let first = TestApp::spawn_on_postgres_with(&limits).await;
    let second = first.spawn_sibling(&limits).await;
    let numbers = [
        "+15551230001",
        "+15551230002",
        "+15551230003",
        "+15551230004",
    ];
    first.twilio_expects_codes(&numbers[..3], 3).await;

    for (instance, number) in [
        (&first, numbers[0]),
        (&second, numbers[1]),
        (&first, numbers[2]),
    ] {
        let (status, body) = instance
            .post("/v1/verifications", json!({"to": number}))
            .await;
        assert_eq!(status, 201, "{number}: {body}");
    }
    let refused = second
        .client
        .post(format!("{}/v1/verifications", second.base))
        .bearer_auth(API_KEY)
        .json(&json!({"to": numbers[3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The first send leaves the hour-long window first.
    assert!((3_590..=3_600).contains(&retry_after), "{retry_after}");
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "rate-limited");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("too many codes sent for this API key"),
        "{problem}"
    );
    first.twilio_requests(3).await;
}

#[tokio::test]
async fn the_number_limit_holds_across_two_instances_and_new_verifications() {
    let limits = [("VERIFY_SENDS_PER_NUMBER", "2")];
    let first = TestApp::spawn_on_postgres_with(&limits).await;
    let second = first.spawn_sibling(&limits).await;
    first.twilio_expects_codes(&["+15551234567"], 2).await;
    first.twilio_expects_codes(&["+15557654321"], 1).await;

    // Canceling lets a new verification start at once, but not a third code to the number.
    for (sends, instance) in [(1, &first), (2, &second)] {
        let (status, started) = instance
            .post("/v1/verifications", json!({"to": "+15551234567"}))
            .await;
        assert_eq!(status, 201, "{started}");
        // Sent before it is canceled: canceling would stop a code still queued.
        first.twilio_requests(sends).await;
        let id = started["id"].as_str().unwrap();
        let (status, canceled) = instance
            .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
            .await;
        assert_eq!(status, 200, "{canceled}");
    }
    let (status, problem) = first
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 429, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .starts_with("too many codes sent to this number"));
    // Another number is not held back by this one's limit.
    let (status, _) = second
        .post("/v1/verifications", json!({"to": "+15557654321"}))
        .await;
    assert_eq!(status, 201);
    first.twilio_requests(3).await;
}
