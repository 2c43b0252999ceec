//! The operator's dashboard over plain HTTP, as a browser's requests reach it: who gets in (an
//! admin key, not a client's nor a wrong one), what the session cookie is and that another
//! instance accepts it, forms refused without their token, the headers every page carries and
//! the assets compiled into the binary; and what the pages show: conversion as the API reports
//! it, a provider's circuit opening, an endpoint's failing deliveries, a number's messages and
//! verifications under every key. `dashboard_browser` drives the pages in Chromium.

use std::time::{Duration, Instant};

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{code_in, TestApp, API_KEY, MESSAGES_PATH};

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

pub async fn spawn() -> TestApp {
    TestApp::spawn_with(&[("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}"))]).await
}

/// A browser-like client that keeps redirects for the test to see.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of each cookie a response sets, with its attributes.
fn cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_named<'a>(cookies: &'a [String], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .map(String::as_str)
}

/// The value of `name="..."`'s `value` attribute in `html`.
fn field_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!(r#"name="{name}" value=""#))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Logs in with `key` through the form: the response to the form's post, and the login
/// cookie's `name=value` it was posted with.
pub async fn log_in(app: &TestApp, key: &str) -> Response {
    let client = browser();
    let form = client
        .get(format!("{}/dashboard/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let set = cookies(&form);
    let login_cookie = cookie_named(&set, "dashboard_login")
        .expect("the login form sets its cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = form.text().await.unwrap();
    let token = field_value(&html, "csrf");
    client
        .post(format!("{}/dashboard/login", app.base))
        .header("cookie", login_cookie)
        .form(&[("key", key), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap()
}

/// A session cookie (`dashboard_session=...`) for the admin key.
pub async fn session(app: &TestApp) -> String {
    let response = log_in(app, ADMIN_KEY).await;
    assert_eq!(response.status(), 303);
    let set = cookies(&response);
    cookie_named(&set, "dashboard_session")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> Response {
    browser()
        .get(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_key_logs_in_for_twelve_hours_and_a_client_key_or_a_wrong_key_is_refused() {
    let app = spawn().await;
    let anonymous = browser()
        .get(format!("{}/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()[LOCATION], "/dashboard/login");

    let client = log_in(&app, API_KEY).await;
    assert_eq!(client.status(), 403);
    assert!(cookie_named(&cookies(&client), "dashboard_session").is_none());
    assert!(client.text().await.unwrap().contains("admin keys"));
    let wrong = log_in(&app, "not-a-key-of-this-service").await;
    assert_eq!(wrong.status(), 401);
    assert!(cookie_named(&cookies(&wrong), "dashboard_session").is_none());

    let admin = log_in(&app, ADMIN_KEY).await;
    assert_eq!(admin.status(), 303);
    assert_eq!(admin.headers()[LOCATION], "/dashboard");
    let set = cookies(&admin);
    let cookie = cookie_named(&set, "dashboard_session").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
        "Path=/dashboard",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    // Served over http here: a Secure cookie would never come back.
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(
        !cookie.contains(ADMIN_KEY),
        "the cookie holds the key: {cookie}"
    );

    let session = cookie.split(';').next().unwrap();
    let overview = page(&app, session, "/dashboard").await;
    assert_eq!(overview.status(), 200);
    assert!(overview.text().await.unwrap().contains("Last 24 hours"));
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_service_is_reached_by_https() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}")),
        ("PUBLIC_BASE_URL", "https://sms.example.com"),
    ])
    .await;
    let admin = log_in(&app, ADMIN_KEY).await;
    let set = cookies(&admin);
    let cookie = cookie_named(&set, "dashboard_session").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn another_instance_accepts_the_session_and_a_forged_one_is_refused() {
    let app = spawn().await;
    // Another instance of the same service: the same pepper and keys, nothing shared in memory.
    let other = spawn().await;
    let session = session(&app).await;
    assert_eq!(
        page(&other, &session, "/dashboard/fraud").await.status(),
        200
    );

    let value = session.trim_start_matches("dashboard_session=");
    let (rest, signature) = value.rsplit_once(':').unwrap();
    // A later expiry, or another name, under the same signature.
    let mut parts: Vec<&str> = rest.split(':').collect();
    let later = (parts[1].parse::<i64>().unwrap() + 86_400).to_string();
    parts[1] = &later;
    let forged = format!("dashboard_session={}:{signature}", parts.join(":"));
    let refused = page(&app, &forged, "/dashboard").await;
    assert_eq!(refused.status(), 303);
    assert_eq!(refused.headers()[LOCATION], "/dashboard/login");
}

#[tokio::test]
async fn a_form_without_the_sessions_token_changes_nothing() {
    let app = spawn().await;
    let session = session(&app).await;
    for token in ["", "0000"] {
        let response = browser()
            .post(format!("{}/dashboard/fraud/block", app.base))
            .header("cookie", &session)
            .form(&[("prefix", "+447700900"), ("csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "token {token:?}");
    }
    let (status, blocks) = app
        .send_as(ADMIN_KEY, Method::GET, "/v1/fraud/blocks", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(blocks["blocks"], json!([]));

    // With it, the block is placed.
    let fraud = page(&app, &session, "/dashboard/fraud")
        .await
        .text()
        .await
        .unwrap();
    let token = field_value(&fraud, "csrf");
    // A period out of range is refused in the domain's own words, and places nothing.
    let refused = browser()
        .post(format!("{}/dashboard/fraud/block", app.base))
        .header("cookie", &session)
        .form(&[
            ("prefix", "+447700900"),
            ("hours", "721"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("a whole number of hours from 1 to 720"));
    let placed = browser()
        .post(format!("{}/dashboard/fraud/block", app.base))
        .header("cookie", &session)
        .form(&[("prefix", "+447700900"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 303);
    let (_, blocks) = app
        .send_as(ADMIN_KEY, Method::GET, "/v1/fraud/blocks", None)
        .await;
    assert_eq!(blocks["blocks"][0]["prefix"], "+447700900");
    assert!(blocks["blocks"][0]["reasons"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("ops"));
}

#[tokio::test]
async fn every_page_forbids_inline_script_and_other_origins_and_assets_come_from_the_binary() {
    let app = spawn().await;
    let session = session(&app).await;
    for path in [
        "/dashboard",
        "/dashboard/messages",
        "/dashboard/fraud",
        "/dashboard/templates",
        "/dashboard/webhooks",
        "/dashboard/conversion",
        "/dashboard/providers",
        "/dashboard/login",
    ] {
        let response = page(&app, &session, path).await;
        assert!(
            response.status().is_success() || response.status() == 303,
            "{path}"
        );
        let csp = response.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store", "{path}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("<script>"), "{path} has an inline script");
        assert!(!html.contains("style=\""), "{path} has an inline style");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{path} links elsewhere"
        );
    }

    let overview = page(&app, &session, "/dashboard")
        .await
        .text()
        .await
        .unwrap();
    let start = overview.find("/dashboard/assets/").unwrap();
    let chart = overview[start..]
        .split('"')
        .find(|src| src.ends_with("uPlot.iife.min.js"))
        .map(|src| src.to_owned())
        .or_else(|| {
            overview
                .split('"')
                .find(|src| src.ends_with("uPlot.iife.min.js"))
                .map(str::to_owned)
        })
        .unwrap();
    let asset = browser()
        .get(format!("{}{chart}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(asset.headers()[CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));
    assert!(asset.text().await.unwrap().contains("uPlot"));
}

#[tokio::test]
async fn a_phone_number_is_shown_masked_and_markup_in_data_is_shown_as_text() {
    let app = spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let (status, sent) = app
        .post(
            "/v1/messages",
            json!({"to": "+447700900123", "body": "<script>alert(1)</script>"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let session = session(&app).await;
    let list = page(
        &app,
        &session,
        "/dashboard/messages?key=auth&to=%2B447700900123",
    )
    .await
    .text()
    .await
    .unwrap();
    let results = &list[list.find("<tbody>").expect("a result")..];
    assert!(results.contains(sent["id"].as_str().unwrap()), "{results}");
    // The number the operator typed stays in the search field; the results mask it.
    assert!(!results.contains("+447700900123"), "{results}");
    assert!(results.contains("+44"), "{results}");
    let id = sent["id"].as_str().unwrap();
    let timeline = page(&app, &session, &format!("/dashboard/messages/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!timeline.contains("<script>alert"), "{timeline}");
    assert!(!timeline.contains("+447700900123"), "{timeline}");
}

/// Twilio accepting every code, each under a sid made of its number's digits (Twilio never
/// gives two messages one).
struct AcceptsCodes;

impl Respond for AcceptsCodes {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = wiremock_form::fields(request)
            .remove("To")
            .unwrap_or_default();
        ResponseTemplate::new(201).set_body_json(json!({
            "sid": format!("SM{:0>32}", to.trim_start_matches('+')), "status": "queued",
            "num_segments": "1", "price": "-0.00790", "price_unit": "USD",
            "error_code": null, "error_message": null
        }))
    }
}

/// A scripted run of verifications: three to Britain (two approved), two to the United
/// States (one approved), one to France (none). Answers the admin's conversion report by
/// country once every code is recorded as sent, and the verifications' ids.
pub async fn conversion_run(app: &TestApp) -> (Value, Vec<String>) {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(AcceptsCodes)
        .mount(&app.twilio)
        .await;
    let numbers = [
        ("+447700900111", true),
        ("+447700900222", true),
        ("+447700900333", false),
        ("+15551230001", true),
        ("+15551230002", false),
        ("+33612345678", false),
    ];
    let earlier = app
        .twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .len();
    let mut ids = Vec::new();
    for (to, _) in numbers {
        let (status, verification) = app.post("/v1/verifications", json!({ "to": to })).await;
        assert_eq!(status, 201, "{verification}");
        ids.push(verification["id"].as_str().unwrap().to_owned());
    }
    let requests = app.twilio_requests(earlier + numbers.len()).await;
    for ((to, approve), id) in numbers.iter().zip(&ids) {
        if !approve {
            continue;
        }
        let sms = requests
            .iter()
            .find(|request| request["To"] == *to)
            .unwrap_or_else(|| panic!("no code sent to {to}"));
        let (status, check) = app
            .post(
                &format!("/v1/verifications/{id}/check"),
                json!({ "code": code_in(&sms["Body"]) }),
            )
            .await;
        assert_eq!(status, 200, "{check}");
        assert_eq!(check["status"], "approved", "{check}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = app
            .send_as(
                ADMIN_KEY,
                Method::GET,
                "/v1/reports/conversion?since=7d&group_by=country",
                None,
            )
            .await;
        assert_eq!(status, 200, "{report}");
        let sent: u64 = report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|group| group["codes_sent"].as_u64().unwrap())
            .sum();
        if sent == numbers.len() as u64 {
            return (report, ids);
        }
        assert!(Instant::now() < deadline, "codes not recorded: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A report group's row as the conversion page writes it: name, started, codes sent,
/// approved, conversion.
pub fn conversion_row(group: &Value) -> String {
    format!(
        r#"<th scope="row">{}</th><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{:.1}%</td>"#,
        group["key"].as_str().unwrap(),
        group["verifications_started"],
        group["codes_sent"],
        group["approved"],
        group["conversion_rate"].as_f64().unwrap() * 100.0
    )
}

#[tokio::test]
async fn the_conversion_page_shows_each_countrys_figures_as_the_api_reports_them() {
    let app = spawn().await;
    let (report, _) = conversion_run(&app).await;
    let session = session(&app).await;
    let html = page(&app, &session, "/dashboard/conversion?by=country&period=7d")
        .await
        .text()
        .await
        .unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{report}");
    for group in groups {
        assert!(html.contains(&conversion_row(group)), "{group} in {html}");
    }
    assert!(
        html.contains(r#"<dd data-figure="started">6</dd>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<dd data-figure="approved">3</dd>"#),
        "{html}"
    );
    // Most started first unless asked; the chart carries the same groups in the same order.
    let order = |html: &str| -> Vec<usize> {
        ["GB", "US", "FR"]
            .iter()
            .map(|key| {
                html.find(&format!(r#"<th scope="row">{key}</th>"#))
                    .unwrap()
            })
            .collect()
    };
    let at = order(&html);
    assert!(at[0] < at[1] && at[1] < at[2], "{html}");
    assert!(
        html.contains(r#"data-labels="[&quot;GB&quot;,&quot;US&quot;,&quot;FR&quot;]" data-rates="[66.7,50.0,0.0]""#),
        "{html}"
    );
    let by_name = page(
        &app,
        &session,
        "/dashboard/conversion?by=country&period=7d&sort=key&dir=asc",
    )
    .await
    .text()
    .await
    .unwrap();
    let at = order(&by_name);
    assert!(at[2] < at[0] && at[0] < at[1], "FR, GB, US: {by_name}");
    assert!(by_name.contains(r#"aria-sort="ascending""#));
}

#[tokio::test]
async fn a_provider_failing_until_its_circuit_opens_is_shown_open_on_its_page_and_the_overview() {
    let vonage = MockServer::start().await;
    let app = TestApp::spawn_with(&[
        ("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}")),
        ("SMS_PROVIDERS", "twilio,vonage"),
        ("VONAGE_API_KEY", "vonage-key"),
        ("VONAGE_API_SECRET", "vonage-secret"),
        ("VONAGE_FROM", "Acme"),
        ("VONAGE_API_BASE_URL", &vonage.uri()),
        ("CIRCUIT_FAILURES", "3"),
        ("RETRY_BASE_MS", "1"),
    ])
    .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/sms/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message-count": "1",
            "messages": [{"to": "447700900123", "message-id": "0A0000001234", "status": "0",
                          "message-price": "0.03330000"}]
        })))
        .mount(&vonage)
        .await;
    let session = session(&app).await;
    let before = page(&app, &session, "/dashboard/providers")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        before.contains(r#"data-circuit="twilio">closed<"#),
        "{before}"
    );
    assert!(
        before.contains(r#"data-circuit="vonage">closed<"#),
        "{before}"
    );

    let (status, sent) = app
        .post(
            "/v1/messages",
            json!({"to": "+447700900123", "body": "Your order has shipped"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    app.wait_for_status(sent["id"].as_str().unwrap(), "sent")
        .await;
    let after = page(&app, &session, "/dashboard/providers")
        .await
        .text()
        .await
        .unwrap();
    assert!(after.contains(r#"data-circuit="twilio">open<"#), "{after}");
    assert!(
        after.contains(r#"data-circuit="vonage">closed<"#),
        "{after}"
    );
    let twilio_row = &after[after.find(r#"data-circuit="twilio""#).unwrap()..];
    let twilio_row = &twilio_row[..twilio_row.find("</tr>").unwrap()];
    assert!(
        twilio_row.contains(r#"<td>3</td>"#),
        "three failures: {twilio_row}"
    );
    let overview = page(&app, &session, "/dashboard")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        overview.contains(r#"data-circuit="twilio">open<"#),
        "the overview shows the open circuit too: {overview}"
    );
}

#[tokio::test]
async fn an_endpoints_failing_deliveries_show_its_answer_and_the_next_try() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}")),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&receiver)
        .await;
    let (status, endpoint) = app
        .post(
            "/v1/webhook-endpoints",
            json!({
                "url": format!("{}/hooks", receiver.uri()),
                "events": ["verification.canceled"],
            }),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    let id = verification["id"].as_str().unwrap();
    let (status, _) = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);

    let session = session(&app).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let html = loop {
        let html = page(&app, &session, "/dashboard/webhooks")
            .await
            .text()
            .await
            .unwrap();
        if html.contains("HTTP 500") {
            break html;
        }
        assert!(
            Instant::now() < deadline,
            "no failing delivery shown: {html}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let section = &html[html.find("endpoint-deliveries").unwrap()..];
    assert!(
        section.contains("<code>verification.canceled</code>"),
        "{section}"
    );
    assert!(
        section.contains(&format!(r#"href="/dashboard/verifications/{id}""#)),
        "{section}"
    );
    // Retried later, not given up after one failure.
    assert!(!section.contains("given up"), "{section}");
    assert!(section.contains("<time"), "{section}");
}

#[tokio::test]
async fn a_numbers_messages_and_verifications_are_found_under_every_key() {
    let app = spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let (status, sent) = app
        .post(
            "/v1/messages",
            json!({"to": "+447700900123", "body": "Your order has shipped"}),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+447700900123"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    let session = session(&app).await;
    // No key chosen: every key's.
    let messages = page(&app, &session, "/dashboard/messages?to=%2B447700900123")
        .await
        .text()
        .await
        .unwrap();
    let results = &messages[messages.find("<tbody>").expect("results")..];
    assert!(results.contains(sent["id"].as_str().unwrap()), "{results}");
    assert!(messages.contains("Messages of every key"), "{messages}");
    assert!(!results.contains("+447700900123"), "{results}");

    let verifications = page(
        &app,
        &session,
        "/dashboard/messages?what=verifications&to=%2B447700900123",
    )
    .await
    .text()
    .await
    .unwrap();
    let results = &verifications[verifications.find("<tbody>").expect("results")..];
    let id = verification["id"].as_str().unwrap();
    assert!(results.contains(id), "{results}");
    assert!(!results.contains("+447700900123"), "{results}");
    assert!(results.contains("<td>0 of "), "no check yet: {results}");

    let timeline = page(&app, &session, &format!("/dashboard/verifications/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        timeline.contains("the fraud guard's decision"),
        "{timeline}"
    );
    assert!(timeline.contains("checks made"), "{timeline}");
    assert!(!timeline.contains("+447700900123"), "{timeline}");
}
