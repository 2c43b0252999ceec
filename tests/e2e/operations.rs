//! What operators rely on: metrics that count exactly what happened, readiness, request ids,
//! and an OpenAPI description that covers every route.

use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{
    code_in, twilio_send, TestApp, ACCOUNT_SID, API_KEY, AUTH_TOKEN, MESSAGES_PATH,
};

fn twilio_created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": sid, "status": "queued", "num_segments": "1", "price": null,
        "price_unit": "USD", "error_code": null, "error_message": null
    }))
}

#[tokio::test]
async fn a_scrape_after_a_scripted_flow_shows_exactly_what_happened() {
    let app = TestApp::spawn().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(twilio_send("+447700900123", "Your parcel is on its way"))
        .respond_with(twilio_created("SM00000000000000000000000000000001"))
        .expect(1)
        .mount(&app.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(twilio_send("+15005550001", "Your parcel is on its way"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            twilio_send("+15551234567", "Your Smarter Firms verification code is: ")
                .any("ValidityPeriod"),
        )
        .respond_with(twilio_created("SM00000000000000000000000000000002"))
        .expect(1)
        .mount(&app.twilio)
        .await;

    // Two messages: one Twilio accepts, one it refuses for good.
    let body = "Your parcel is on its way";
    let (status, delivered) = app
        .post("/v1/messages", json!({"to": "+447700900123", "body": body}))
        .await;
    assert_eq!(status, 202, "{delivered}");
    let (_, refused) = app
        .post("/v1/messages", json!({"to": "+15005550001", "body": body}))
        .await;
    app.wait_for_status(delivered["id"].as_str().unwrap(), "sent")
        .await;
    app.wait_for_status(refused["id"].as_str().unwrap(), "failed")
        .await;

    // A verification: a resend too soon (refused), a wrong code, the right code.
    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    let (status, _) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 429);
    let code = code_in(&app.twilio_requests(3).await.last().unwrap()["Body"]);
    let check = format!(
        "/v1/verifications/{}/check",
        verification["id"].as_str().unwrap()
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (_, outcome) = app.post(&check, json!({"code": wrong})).await;
    assert_eq!(outcome["valid"], false);
    let (_, outcome) = app.post(&check, json!({"code": code})).await;
    assert_eq!(outcome["valid"], true);
    app.wait_for_status(&wait_for_code_message(&app).await, "sent")
        .await;

    let metrics = app.metrics().await;
    for expected in [
        r#"sms_notify_http_requests_total{method="POST",route="/v1/messages",status="202",api_key="auth"} 2"#,
        r#"sms_notify_http_requests_total{method="POST",route="/v1/verifications",status="201",api_key="auth"} 1"#,
        r#"sms_notify_http_requests_total{method="POST",route="/v1/verifications",status="429",api_key="auth"} 1"#,
        r#"sms_notify_http_requests_total{method="POST",route="/v1/verifications/{id}/check",status="200",api_key="auth"} 2"#,
        r#"sms_notify_http_request_duration_seconds_count{method="POST",route="/v1/messages"} 2"#,
        r#"sms_notify_provider_requests_total{provider="twilio",outcome="sent"} 2"#,
        r#"sms_notify_provider_requests_total{provider="twilio",outcome="permanent_error"} 1"#,
        r#"sms_notify_provider_errors_total{provider="twilio",code="21211"} 1"#,
        r#"sms_notify_provider_request_duration_seconds_count{provider="twilio"} 3"#,
        r#"sms_notify_messages{status="sent",channel="sms"} 2"#,
        r#"sms_notify_messages{status="failed",channel="sms"} 1"#,
        "sms_notify_queue_depth 0",
        "sms_notify_queue_oldest_age_seconds 0.0",
        r#"sms_notify_verifications_total{event="started"} 1"#,
        r#"sms_notify_verifications_total{event="failed"} 1"#,
        r#"sms_notify_verifications_total{event="approved"} 1"#,
        r#"sms_notify_rate_limit_refusals_total{limit="resend_interval"} 1"#,
    ] {
        assert!(
            metrics.iter().any(|line| line == expected),
            "missing `{expected}` in\n{}",
            metrics.join("\n")
        );
    }
    // Nothing counted that did not happen.
    let series = |prefix: &str| metrics.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(series("sms_notify_provider_errors_total"), 1);
    assert_eq!(series("sms_notify_messages{"), 2);
    assert_eq!(series("sms_notify_pumping_alarms_total"), 0);
}

/// The id of the message that carried the verification's code.
async fn wait_for_code_message(app: &TestApp) -> String {
    let (status, page) = app.get("/v1/messages?to=%2B15551234567").await;
    assert_eq!(status, 200, "{page}");
    page["messages"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn readiness_checks_the_database_migrations_and_provider() {
    let app = TestApp::spawn_default().await;
    let response = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "status": "ready",
            "checks": {"database": "ok", "migrations": "ok", "provider": "ok"},
            "providers": ["console"],
            "warning": "the console provider prints SMS, codes included, to the log: none is sent"
        })
    );
    let alive = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_request_id_is_taken_from_the_client_or_made_and_always_echoed() {
    let app = TestApp::spawn_default().await;
    let url = format!("{}/v1/templates", app.base);
    let given = app
        .client
        .get(&url)
        .bearer_auth(API_KEY)
        .header("X-Request-Id", "checkout-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "checkout-7f3a");
    let made = app
        .client
        .get(&url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let odd = app
        .client
        .get(&url)
        .header("X-Request-Id", "two words")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 401, "errors carry an id too");
    assert_ne!(odd.headers()["x-request-id"], "two words");
}

/// Every path and method of the served description answers from its route, not from the
/// not-found fallback or a 405; the router adds routes only with their description
/// (`http::api`), so the two cannot drift either way.
#[tokio::test]
async fn every_documented_route_is_served() {
    let app = TestApp::spawn_default().await;
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = 0;
    for (template, item) in paths {
        let path = template
            .replace("{id}", "01890000-0000-7000-8000-000000000000")
            .replace("{name}", "two-factor-auth")
            .replace("{prefix}", "+447700900")
            .replace("{e164}", "+15551234567");
        for method in item.as_object().unwrap().keys() {
            let request = app
                .client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{path}", app.base),
                )
                .bearer_auth(API_KEY);
            let request = if method == "post" {
                request.json(&json!({}))
            } else {
                request
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {template} is not routed");
            assert!(
                !(status == 404
                    && body["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("no such route"))),
                "{method} {template} is not routed"
            );
            operations += 1;
        }
    }
    assert_eq!(
        operations,
        35,
        "the API's operations, documented: {:?}",
        paths.keys()
    );
}

#[tokio::test]
async fn readiness_asks_twilio_whether_the_credentials_work() {
    use wiremock::matchers::{basic_auth, method, path};
    use wiremock::{Mock, ResponseTemplate};

    let account_path = format!("/2010-04-01/Accounts/{}.json", crate::support::ACCOUNT_SID);
    let ready = TestApp::spawn().await;
    Mock::given(method("GET"))
        .and(path(account_path.as_str()))
        .and(basic_auth(
            crate::support::ACCOUNT_SID,
            crate::support::AUTH_TOKEN,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sid": crate::support::ACCOUNT_SID, "status": "active", "friendly_name": "Smarter Firms"
        })))
        // Cached: two probes, one question to Twilio.
        .expect(1)
        .mount(&ready.twilio)
        .await;
    for _ in 0..2 {
        let (status, _) = ready.get("/readyz").await;
        assert_eq!(status, 200);
    }

    let refused = TestApp::spawn().await;
    Mock::given(method("GET"))
        .and(path(account_path.as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": 20003, "message": "Authenticate", "status": 401,
            "more_info": "https://www.twilio.com/docs/errors/20003"
        })))
        .expect(1)
        .mount(&refused.twilio)
        .await;
    let (status, problem) = refused.get("/readyz").await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "not-ready");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("provider: twilio: credentials refused"),
        "{problem}"
    );
    assert!(
        !detail.contains("Authenticate"),
        "Twilio's own text: {problem}"
    );
}
