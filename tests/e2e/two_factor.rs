use serde_json::json;

use crate::support::{code_in, TestApp, FROM};

#[tokio::test]
async fn a_code_sent_through_twilio_approves_its_verification_once() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;

    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+1 555 123 4567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    assert_eq!(verification["status"], "pending");
    assert_eq!(verification["to"], "+1555***4567");
    assert_eq!(verification["send_count"], 1);
    let id = verification["id"].as_str().unwrap();

    let sent = app.twilio_requests(1).await;
    assert_eq!(sent[0]["To"], "+15551234567");
    assert_eq!(sent[0]["From"], FROM);
    let code = code_in(&sent[0]["Body"]);
    assert_eq!(code.len(), 6, "{}", sent[0]["Body"]);
    assert!(sent[0]["Body"]
        .ends_with("This code will expire in 10 minutes. Do not share this code with anyone."));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": wrong}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        check,
        json!({"status": "pending", "valid": false, "attempts_left": 4})
    );

    let (_, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        check,
        json!({"status": "approved", "valid": true, "attempts_left": 3})
    );

    // Approval is single-use.
    let (_, again) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(again["status"], "approved");
    assert_eq!(again["valid"], false);
}

#[tokio::test]
async fn five_wrong_codes_lock_the_verification_even_for_the_right_one() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000002")
        .await;
    let (_, verification) = app
        .post(
            "/v1/verifications",
            json!({"to": "+15551234567", "code_length": 4}),
        )
        .await;
    let id = verification["id"].as_str().unwrap();
    let code = code_in(&app.twilio_requests(1).await[0]["Body"]);
    assert_eq!(code.len(), 4);
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..5 {
        app.post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": wrong}),
        )
        .await;
    }
    let (_, sixth) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        sixth,
        json!({"status": "max_attempts_reached", "valid": false, "attempts_left": 0})
    );
}

#[tokio::test]
async fn asking_again_at_once_is_refused_with_retry_after() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000003")
        .await;
    let (status, _) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201);
    let response = app
        .client
        .post(format!("{}/v1/verifications", app.base))
        .bearer_auth(crate::support::API_KEY)
        .json(&json!({"to": "+15551234567"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn the_default_run_prints_the_code_and_approves_it() {
    // SQLite and the console provider: nothing reaches Twilio, the code is checked all the same.
    let app = TestApp::spawn_default().await;
    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    let id = verification["id"].as_str().unwrap();
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": "000000"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(check["valid"], false);
    assert_eq!(check["attempts_left"], 4);
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}
