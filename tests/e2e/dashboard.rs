//! The operator's dashboard over plain HTTP, as a browser's requests reach it: who gets in (an
//! admin key, not a client's nor a wrong one), what the session cookie is and that another
//! instance accepts it, forms refused without their token, the headers every page carries and
//! the assets compiled into the binary. `dashboard_browser` drives the pages in Chromium.

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Method, Response};
use serde_json::json;

use crate::support::{TestApp, API_KEY};

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
