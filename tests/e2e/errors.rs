//! Every refusal is an `application/problem+json` document naming what is wrong: bad input,
//! malformed JSON, a missing key, an unknown id or route.

use serde_json::{json, Value};

use crate::support::TestApp;

async fn problem(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let (status, problem) = app.post(path, body).await;
    assert!(
        problem["title"].is_string(),
        "not a problem document: {problem}"
    );
    (status, problem)
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"to": "5551234567", "body": "hi"}), 422, Some("to")),
        (json!({"to": "+1 555 123", "body": "hi"}), 422, Some("to")),
        (
            json!({"to": "+15551234567", "template": "nope"}),
            422,
            Some("template"),
        ),
        (
            json!({"to": "+15551234567", "template": "two-factor-auth", "data": {"code": "1"}}),
            422,
            Some("data.expiryMinutes"),
        ),
        (
            json!({"to": "+15551234567", "body": "hi", "colour": "red"}),
            422,
            Some("colour"),
        ),
        (json!({"body": "hi"}), 422, Some("to")),
        (
            json!({"to": "+15551234567", "body": "hi", "channel": "fax"}),
            422,
            Some("channel"),
        ),
        (json!({"to": "+15551234567"}), 422, Some("template")),
        (
            json!({"to": "+15551234567", "body": "nul \u{0} here"}),
            422,
            Some("body"),
        ),
    ];
    for (body, expected_status, field) in cases {
        let (status, problem) = problem(&app, "/v1/messages", body.clone()).await;
        assert_eq!(status, expected_status, "{body} -> {problem}");
        assert_eq!(problem["field"].as_str(), field, "{body} -> {problem}");
    }
    let (status, problem) = problem(
        &app,
        "/v1/verifications",
        json!({"to": "+15551234567", "code_length": 12}),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("code_length"))
    );
    // No store keeps a NUL; any field holding one is the client's 422, not the service's 500.
    let (status, nul) = self::problem(
        &app,
        "/v1/verifications",
        json!({"to": "+15551234567", "user_id": "u\u{0}1"}),
    )
    .await;
    assert_eq!((status, nul["field"].as_str()), (422, Some("user_id")));
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .bearer_auth(crate::support::API_KEY)
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_api_key_is_a_401_problem() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/verifications", app.base);
    let body = json!({"to": "+15551234567"});
    let missing = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("not-the-key-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let problem: Value = wrong.json().await.unwrap();
    assert_eq!(problem["type"], "unauthorized");
}

#[tokio::test]
async fn unknown_ids_and_routes_are_404_problems() {
    let app = TestApp::spawn().await;
    let (status, _) = app.get("/v1/messages/not-a-uuid").await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get("/v1/messages/01890000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            "/v1/verifications/01890000-0000-7000-8000-000000000000/check",
            json!({"code": "123456"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, problem) = app.get("/v2/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(problem["type"], "not-found");
}
