//! The data a client's users can ask about: `DELETE /v1/numbers/{e164}` erases a number's
//! messages and verifications across API keys (admin keys only), and the usage report keeps
//! its counts.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestApp, API_KEY};

const BILLING_KEY: &str = "billing-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const ALICE: &str = "+15551234567";
const BOB: &str = "+447700900123";

async fn queue(app: &TestApp, key: &str, to: &str) -> String {
    let (status, message) = app
        .send_as(
            key,
            Method::POST,
            "/v1/messages",
            Some(json!({"to": to, "body": "Your parcel is on its way"})),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    message["id"].as_str().unwrap().to_owned()
}

async fn usage_by_key(app: &TestApp) -> Value {
    let (status, report) = app
        .send_as(
            ADMIN_KEY,
            Method::GET,
            "/v1/reports/usage?group_by=api_key&since=1d",
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    report["groups"].clone()
}

#[tokio::test]
async fn erasing_a_number_removes_it_for_every_api_key_and_the_usage_report_keeps_its_counts() {
    let app = TestApp::spawn_with(&[
        ("API_KEYS", &format!("auth:{API_KEY},billing:{BILLING_KEY}")),
        ("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}")),
    ])
    .await;
    app.twilio_accepts("SM0123456789abcdef0123456789abcdef")
        .await;
    let alices = [
        queue(&app, API_KEY, ALICE).await,
        queue(&app, BILLING_KEY, ALICE).await,
    ];
    let bobs = queue(&app, API_KEY, BOB).await;
    let (status, verification) = app.post("/v1/verifications", json!({"to": ALICE})).await;
    assert_eq!(status, 201, "{verification}");
    let verification_id = verification["id"].as_str().unwrap();
    let before = usage_by_key(&app).await;

    let (status, refused) = app
        .send_as(API_KEY, Method::DELETE, "/v1/numbers/%2B15551234567", None)
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["type"], "admin-only");
    let (status, refused) = app
        .send_as(ADMIN_KEY, Method::DELETE, "/v1/numbers/555-1234", None)
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["type"], "invalid-phone-number");
    assert_eq!(refused["field"], "e164");
    assert_eq!(app.get(&format!("/v1/messages/{}", alices[0])).await.0, 200);

    let (status, erased) = app
        .send_as(
            ADMIN_KEY,
            Method::DELETE,
            "/v1/numbers/%2B15551234567",
            None,
        )
        .await;

    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["to"], "+1555***4567");
    assert_eq!(erased["canceled_verifications"], 1);
    // Both keys' messages and the code's message; one verification and its code.
    assert_eq!(erased["erased"]["messages"], 3, "{erased}");
    assert_eq!(erased["erased"]["verifications"], 1, "{erased}");
    assert_eq!(erased["erased"]["verification_codes"], 1, "{erased}");
    let (status, _) = app.get(&format!("/v1/messages/{}", alices[0])).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .send_as(
            BILLING_KEY,
            Method::GET,
            &format!("/v1/messages/{}", alices[1]),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&format!("/v1/verifications/{verification_id}"))
        .await;
    assert_eq!(status, 404);
    let (status, check) = app
        .post(
            "/v1/verification-checks",
            json!({"to": ALICE, "code": "123456"}),
        )
        .await;
    assert_eq!(status, 404, "{check}");
    assert_eq!(app.get(&format!("/v1/messages/{bobs}")).await.0, 200);
    assert_eq!(usage_by_key(&app).await, before, "the report changed");

    let (status, again) = app
        .send_as(ADMIN_KEY, Method::DELETE, "/v1/numbers/+15551234567", None)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["erased"]["messages"], 0);
}
