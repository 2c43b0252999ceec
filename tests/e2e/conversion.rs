//! The conversion report (`GET /v1/reports/conversion`) over a scripted run: verifications
//! started, codes sent through Twilio and their delivery receipts, some approved, on a clock
//! the test moves, give exact counts, costs and latencies in their buckets; the usage report
//! agrees on the same messages, and a client key sees only its own.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha1::Sha1;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::support::{
    code_in, TestApp, TestClock, ACCOUNT_SID, API_KEY, AUTH_TOKEN, MESSAGES_PATH,
};

const BILLING_KEY: &str = "billing-key-0123456789abcdef";
const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";

/// Twilio accepting each code for 0.0079 USD, as a message sid made of its number's digits.
struct Accepts;

impl Respond for Accepts {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = wiremock_form::fields(request)
            .remove("To")
            .unwrap_or_default();
        ResponseTemplate::new(201).set_body_json(json!({
            "sid": sid_of(&to), "status": "queued", "num_segments": "1", "price": "-0.00790",
            "price_unit": "USD", "error_code": null, "error_message": null
        }))
    }
}

fn sid_of(to: &str) -> String {
    format!("SM{:0>32}", to.trim_start_matches('+'))
}

/// Posts Twilio's `delivered` report for the code sent to `to`, signed as Twilio signs it.
async fn delivered(app: &TestApp, to: &str) {
    let sid = sid_of(to);
    let mut params = vec![
        ("AccountSid", ACCOUNT_SID.to_owned()),
        ("MessageSid", sid.clone()),
        ("MessageStatus", "delivered".to_owned()),
        ("SmsSid", sid),
        ("SmsStatus", "delivered".to_owned()),
        ("To", to.to_owned()),
    ];
    params.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(CALLBACK_URL.as_bytes());
    for (name, value) in &params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    let response = app
        .client
        .post(format!("{}/v1/webhooks/twilio/status", app.base))
        .header(
            "X-Twilio-Signature",
            BASE64.encode(mac.finalize().into_bytes()),
        )
        .form(&params)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn start(app: &TestApp, key: &str, to: &str) -> String {
    let (status, verification) = app
        .send_as(
            key,
            Method::POST,
            "/v1/verifications",
            Some(json!({"to": to})),
        )
        .await;
    assert_eq!(status, 201, "{verification}");
    verification["id"].as_str().unwrap().to_owned()
}

async fn check(app: &TestApp, id: &str, code: &str) {
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "approved", "{check}");
}

/// Waits until `count` messages of the admin's view are `sent` (accepted, recorded).
async fn wait_until_sent(app: &TestApp, key: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = app
            .send_as(key, Method::GET, "/v1/messages?status=sent", None)
            .await;
        if page["messages"].as_array().map_or(0, Vec::len) >= count {
            return;
        }
        assert!(Instant::now() < deadline, "codes not sent: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn report(app: &TestApp, key: &str, query: &str) -> Value {
    let (status, report) = app
        .send_as(key, Method::GET, &format!("/v1/reports/{query}"), None)
        .await;
    assert_eq!(status, 200, "{query}: {report}");
    report
}

/// The latency estimate lies in the bucket of the true one, `[low, high]` in milliseconds.
fn within(latency: &Value, low: u64, high: u64) {
    assert_eq!(latency["count"], 1, "{latency}");
    for percentile in ["p50", "p95"] {
        let estimate = latency[percentile].as_u64().unwrap();
        assert!((low..=high).contains(&estimate), "{latency}");
    }
}

#[tokio::test]
async fn a_scripted_run_gives_exact_conversion_figures_the_usage_report_agrees_with() {
    let clock = TestClock::now_shared();
    let keys = format!("auth:{API_KEY},billing:{BILLING_KEY}");
    let admins = format!("ops:{ADMIN_KEY}");
    let app = TestApp::spawn_on_postgres_with_clock(
        &[
            ("API_KEYS", &keys),
            ("ADMIN_API_KEYS", &admins),
            ("PUBLIC_BASE_URL", "https://notify.example.com"),
        ],
        clock.clone(),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .respond_with(Accepts)
        .mount(&app.twilio)
        .await;

    let (gb_approved, gb_pending, us) = ("+447700900123", "+447700900456", "+15551234567");
    let mut ids = Vec::new();
    for to in [gb_approved, gb_pending, us] {
        ids.push(start(&app, API_KEY, to).await);
    }
    start(&app, BILLING_KEY, "+15551234568").await;
    let sent = app.twilio_requests(4).await;
    let code_to =
        |to: &str| code_in(&sent.iter().find(|request| request["To"] == to).unwrap()["Body"]);
    wait_until_sent(&app, API_KEY, 3).await;
    wait_until_sent(&app, BILLING_KEY, 1).await;

    // Receipts 5 s after sending; approvals 30 s and 90 s after the start.
    clock.advance(TimeDelta::seconds(5));
    delivered(&app, gb_approved).await;
    delivered(&app, us).await;
    clock.advance(TimeDelta::seconds(25));
    check(&app, &ids[0], &code_to(gb_approved)).await;
    clock.advance(TimeDelta::seconds(60));
    check(&app, &ids[2], &code_to(us)).await;

    let by_country = report(&app, API_KEY, "conversion?group_by=country&since=1h").await;
    assert_eq!(by_country["group_by"], "country");
    let groups = by_country["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{by_country}");
    let (gb, us_group) = (&groups[0], &groups[1]);
    assert_eq!(gb["key"], "GB");
    assert_eq!(
        (
            &gb["verifications_started"],
            &gb["codes_sent"],
            &gb["approved"],
            &gb["conversion_rate"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(0.5)),
        "{gb}"
    );
    within(&gb["time_to_approve_ms"], 30_000, 45_000);
    within(&gb["time_to_deliver_ms"], 5_000, 7_500);
    assert_eq!(gb["cost"], json!([{"currency": "USD", "amount": "0.0158"}]));
    assert_eq!(
        gb["cost_per_approved"],
        json!([{"currency": "USD", "amount": "0.0158"}])
    );
    assert_eq!(us_group["key"], "US");
    assert_eq!(
        (&us_group["verifications_started"], &us_group["approved"]),
        (&json!(1), &json!(1)),
        "{us_group}"
    );
    within(&us_group["time_to_approve_ms"], 60_000, 120_000);
    assert_eq!(us_group["cost_per_approved"][0]["amount"], "0.0079");

    // The usage report counts the same three codes, for the same cost.
    let conversion = report(&app, API_KEY, "conversion?since=1h").await;
    let usage = report(&app, API_KEY, "usage?since=1h").await;
    assert_eq!(conversion["groups"][0]["codes_sent"], 3, "{conversion}");
    assert_eq!(usage["groups"][0]["messages"], 3, "{usage}");
    assert_eq!(conversion["groups"][0]["cost"], usage["groups"][0]["cost"]);
    assert_eq!(usage["groups"][0]["cost"][0]["amount"], "0.0237");

    // Tenants apart: a client key sees its own, an admin key every key's.
    let by_key = |report: &Value| -> Vec<(String, u64)> {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|group| {
                (
                    group["key"].as_str().unwrap().to_owned(),
                    group["verifications_started"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let billing = report(&app, BILLING_KEY, "conversion?group_by=api_key&since=1h").await;
    assert_eq!(by_key(&billing), [("billing".to_owned(), 1)]);
    let admin = report(&app, ADMIN_KEY, "conversion?group_by=api_key&since=1h").await;
    assert_eq!(
        by_key(&admin),
        [("auth".to_owned(), 3), ("billing".to_owned(), 1)]
    );
}

#[tokio::test]
async fn wrong_conversion_parameters_are_422_problems_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("group_by=template", "group_by"),
        ("since=yesterday", "since"),
        ("until=-262143-01-15T00:00:00Z", "until"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("colour=red", "colour"),
    ] {
        let (status, problem) = app.get(&format!("/v1/reports/conversion?{query}")).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
}
