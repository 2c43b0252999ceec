//! The fraud guard seen from a client and an operator: a pumped range blocked with its
//! reasons (in the answer, the decision log and the metrics) and healed after the block
//! period, watching before enforcing, line types, IP velocity, and policy modes changed at
//! run time on every instance, and the daily budgets on codes and messages.

use chrono::TimeDelta;
use domain::fraud::Action;
use ports::{DecisionFilter, FraudStore};
use reqwest::Method;
use serde_json::{json, Value};

use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};
use wiremock_form::Form;

use crate::support::{TestApp, TestClock, ACCOUNT_SID, AUTH_TOKEN, FROM, MESSAGES_PATH};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// Starts verifications to ten numbers of the range `+15551234xxx`, the clock moving two
/// seconds between them (past the guard's one-second reads); answers each start's body.
async fn ten_codes_to_one_range(app: &TestApp, clock: &TestClock) -> Vec<Value> {
    let mut started = Vec::new();
    for n in 0..10 {
        let (status, body) = app
            .post(
                "/v1/verifications",
                json!({"to": format!("+1555123400{n}")}),
            )
            .await;
        assert_eq!(status, 201, "code {n}: {body}");
        started.push(body);
        clock.advance(TimeDelta::seconds(2));
    }
    started
}

async fn decisions(app: &TestApp) -> Vec<ports::LoggedDecision> {
    app.database()
        .store()
        .await
        .decisions(&DecisionFilter {
            action: None,
            since: None,
            until: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_surging_range_is_blocked_with_its_reasons_logged_and_heals_after_the_block_period() {
    let clock = TestClock::now_shared();
    let app = TestApp::spawn_on_postgres_with_clock(&[], clock.clone()).await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;

    let started = ten_codes_to_one_range(&app, &clock).await;
    // Every verification says what the guard decided: nothing found.
    assert_eq!(
        started[0]["risk"],
        json!({"action": "allow", "reasons": []})
    );
    let id = started[0]["id"].as_str().unwrap();
    let (_, shown) = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(shown["risk"], json!({"action": "allow", "reasons": []}));
    let (_, listed) = app.get("/v1/verifications?limit=1").await;
    assert_eq!(listed["verifications"][0]["risk"]["action"], "allow");

    // The eleventh code to the range in minutes, none of them checked: a surge.
    let refused = app
        .client
        .post(format!("{}/v1/verifications", app.base))
        .bearer_auth(crate::support::API_KEY)
        .json(&json!({"to": "+15551234010"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: i64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        retry_after,
        12 * 3_600,
        "the block heals in FRAUD_BLOCK_HOURS"
    );
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["type"].as_str().unwrap().ends_with("fraud-blocked"),
        "{problem}"
    );
    assert_eq!(problem["risk"]["action"], "block");
    assert_eq!(problem["risk"]["reasons"][0]["code"], "prefix_surge");
    let detail = problem["risk"]["reasons"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("+15551234: 10 codes in the last hour"),
        "{detail}"
    );

    // The whole range is blocked, for every number in it, once the block is read.
    clock.advance(TimeDelta::seconds(2));
    let (status, problem) = app
        .post("/v1/verifications", json!({"to": "+15551234999"}))
        .await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["risk"]["reasons"][0]["code"], "prefix_surge");

    let logged = decisions(&app).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(logged
        .iter()
        .all(|entry| entry.decision.action == Action::Block
            && entry.verification_id.is_none()
            && entry.decision.reasons[0].detail == detail));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            &r#"sms_notify_fraud_decisions_total{action="block",reason="prefix_surge"} 2"#
                .to_owned()
        ),
        "{metrics:?}"
    );

    // Twelve hours on, the block has healed by itself and nothing surges any more.
    clock.advance(TimeDelta::hours(12));
    let (status, healed) = app
        .post("/v1/verifications", json!({"to": "+15551234011"}))
        .await;
    assert_eq!(status, 201, "{healed}");
    assert_eq!(healed["risk"]["action"], "allow");
    app.twilio_requests(11).await;
}

#[tokio::test]
async fn codes_counted_by_one_instance_are_judged_by_another_once_its_read_lapses() {
    let clock = TestClock::now_shared();
    let first = TestApp::spawn_on_postgres_with_clock(&[], clock.clone()).await;
    let second = first.spawn_sibling_with_clock(&[], clock.clone()).await;
    first
        .twilio_accepts("SM00000000000000000000000000000005")
        .await;
    // Ten codes to one range, taking turns: each instance sends five of them.
    for n in 0..10 {
        let app = if n % 2 == 0 { &first } else { &second };
        let (status, body) = app
            .post(
                "/v1/verifications",
                json!({"to": format!("+1555123400{n}")}),
            )
            .await;
        assert_eq!(status, 201, "code {n}: {body}");
        assert_eq!(body["risk"]["action"], "allow", "code {n}: {body}");
        clock.advance(TimeDelta::seconds(2));
    }
    // The second instance read the range's counts two seconds ago: it reads them again and
    // sees the first instance's five codes beside its own.
    let (status, problem) = second
        .post("/v1/verifications", json!({"to": "+15551234010"}))
        .await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["risk"]["reasons"][0]["code"], "prefix_surge");
    let detail = problem["risk"]["reasons"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("+15551234: 10 codes in the last hour"),
        "{detail}"
    );
    first.twilio_requests(10).await;
}

#[tokio::test]
async fn in_monitor_mode_the_code_goes_and_what_the_guard_would_have_done_is_recorded() {
    let clock = TestClock::now_shared();
    let app =
        TestApp::spawn_on_postgres_with_clock(&[("FRAUD_MODE", "monitor")], clock.clone()).await;
    app.twilio_accepts("SM00000000000000000000000000000002")
        .await;
    ten_codes_to_one_range(&app, &clock).await;

    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({"to": "+15551234010", "user_id": "user-4711"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["risk"]["action"], "monitor");
    assert_eq!(started["risk"]["reasons"][0]["code"], "prefix_surge");
    let logged = decisions(&app).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].decision.action, Action::Monitor);
    assert_eq!(
        logged[0]
            .verification_id
            .map(|id| id.to_string())
            .as_deref(),
        started["id"].as_str()
    );
    // The log keeps who asked, as the calling service named them.
    assert_eq!(logged[0].user_id.as_deref(), Some("user-4711"));
    assert!(!logged[0].trusted);

    // A user the client vouches for skips the conversion policies, not the line type.
    clock.advance(TimeDelta::seconds(2));
    let (status, vouched) = app
        .post(
            "/v1/verifications",
            json!({"to": "+449012345678", "user_id": "vip-1", "trusted": true}),
        )
        .await;
    assert_eq!(status, 201, "{vouched}");
    assert_eq!(vouched["risk"]["reasons"][0]["code"], "line_type");
    let logged = decisions(&app).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0].user_id.as_deref(), Some("vip-1"));
    assert!(logged[0].trusted);
    app.twilio_requests(12).await;
}

#[tokio::test]
async fn a_premium_rate_number_is_refused_with_a_422_naming_its_line_type() {
    let app = TestApp::spawn().await;
    let (status, problem) = app
        .post("/v1/verifications", json!({"to": "+44 901 234 5678"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "line-type-refused");
    assert_eq!(problem["field"], "to");
    assert_eq!(
        problem["detail"],
        "codes are not sent to premium_rate numbers"
    );
    assert_eq!(problem["risk"]["reasons"][0]["code"], "line_type");
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn codes_asked_for_too_fast_from_one_address_are_refused_until_its_window_moves_on() {
    let app = TestApp::spawn_with(&[("FRAUD_IP_MAX_CODES", "2")]).await;
    app.twilio_accepts("SM00000000000000000000000000000003")
        .await;
    for to in ["+15551230001", "+447700900123"] {
        let (status, body) = app
            .post(
                "/v1/verifications",
                json!({"to": to, "client_ip": "203.0.113.7", "user_id": "u-42"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let refused = app
        .client
        .post(format!("{}/v1/verifications", app.base))
        .bearer_auth(crate::support::API_KEY)
        .json(&json!({"to": "+33612345678", "client_ip": "203.0.113.7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "fraud-blocked");
    assert_eq!(
        problem["risk"]["reasons"],
        json!([{
            "code": "ip_velocity",
            "detail": "203.0.113.7: more than 2 codes asked for in 86400 seconds"
        }])
    );
    // A neighbour in the same /24 is under the range's own, larger limit.
    let (status, body) = app
        .post(
            "/v1/verifications",
            json!({"to": "+33612345678", "client_ip": "203.0.113.8"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, problem) = app
        .post(
            "/v1/verifications",
            json!({"to": "+33612345679", "client_ip": "not-an-address"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "client_ip");
}

#[tokio::test]
async fn an_admin_watches_a_policy_at_run_time_and_every_instance_follows_within_a_second() {
    let clock = TestClock::now_shared();
    let admins = [("ADMIN_API_KEYS", "ops:admin-key-0123456789abcdef")];
    let first = TestApp::spawn_on_postgres_with_clock(&admins, clock.clone()).await;
    let second = first.spawn_sibling_with_clock(&admins, clock.clone()).await;
    first
        .twilio_accepts("SM00000000000000000000000000000004")
        .await;
    let premium = json!({"to": "+449012345678"});
    let (status, _) = second.post("/v1/verifications", premium.clone()).await;
    assert_eq!(status, 422);

    // A client key may not; an unknown policy is named.
    let change = json!({"line_type": "monitor"});
    let (status, problem) = first
        .send_as(
            crate::support::API_KEY,
            Method::PUT,
            "/v1/fraud/policies",
            Some(change.clone()),
        )
        .await;
    assert_eq!(status, 403, "{problem}");
    let (status, problem) = first
        .send_as(
            ADMIN_KEY,
            Method::PUT,
            "/v1/fraud/policies",
            Some(json!({"pumping": "off"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");

    let (status, policies) = first
        .send_as(ADMIN_KEY, Method::PUT, "/v1/fraud/policies", Some(change))
        .await;
    assert_eq!(status, 200, "{policies}");
    assert_eq!(policies["line_type"], "monitor");
    assert_eq!(policies["prefix_surge"], "enforce");

    // The other instance reads the change within a second.
    clock.advance(TimeDelta::seconds(2));
    let (_, read) = second
        .send_as(ADMIN_KEY, Method::GET, "/v1/fraud/policies", None)
        .await;
    assert_eq!(read, policies);
    let (status, started) = second.post("/v1/verifications", premium).await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["risk"]["action"], "monitor");
    assert_eq!(started["risk"]["reasons"][0]["code"], "line_type");
    first.twilio_requests(1).await;
}

/// Starts a verification to `to`; the status and body, and the `Retry-After` header if any.
async fn start(app: &TestApp, to: &str) -> (u16, Value, Option<i64>) {
    let response = app
        .client
        .post(format!("{}/v1/verifications", app.base))
        .bearer_auth(crate::support::API_KEY)
        .json(&json!({ "to": to }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (status, response.json().await.unwrap(), retry_after)
}

#[tokio::test]
async fn a_spent_daily_budget_refuses_codes_until_the_next_utc_day_with_a_warning_at_80_percent() {
    let clock = TestClock::now_shared();
    let app = TestApp::spawn_on_postgres_with_clock(
        &[
            ("SMS_PRICES", "GB:0.04,*:0.05"),
            ("BUDGET_DAILY_PER_COUNTRY", "GB:0.10,*:0.20"),
        ],
        clock.clone(),
    )
    .await;
    app.twilio_accepts("SM00000000000000000000000000000025")
        .await;

    // Two codes to GB spend 0.08 of its 0.10: the second crosses 80%.
    for to in ["+447700900001", "+447700900002"] {
        let (status, body, _) = start(&app, to).await;
        assert_eq!(status, 201, "{body}");
        clock.advance(TimeDelta::seconds(2));
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&r#"sms_notify_budget_warnings_total{scope="country"} 1"#.to_owned()),
        "{metrics:?}"
    );

    // A third would pass the budget: refused, saying why, until midnight UTC.
    let (status, problem, retry_after) = start(&app, "+447700900003").await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "fraud-blocked");
    let detail =
        "the daily budget for GB: 0.08 of 0.10 USD spent today, and this message costs about 0.04";
    assert_eq!(
        problem["risk"],
        json!({"action": "block", "reasons": [{"code": "budget_exhausted", "detail": detail}]})
    );
    let until_midnight = domain::budget::until_next_day(ports::Clock::now(&*clock)).num_seconds();
    let retry_after = retry_after.expect("a Retry-After");
    assert!(
        (until_midnight - 1..=until_midnight + 1).contains(&retry_after),
        "{retry_after} s, midnight in {until_midnight} s"
    );
    let logged = decisions(&app).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].decision.action, Action::Block);
    assert_eq!(logged[0].decision.reasons[0].detail, detail);

    // Every other country has the `*` budget, 0.20 at the `*` price 0.05: four codes.
    for n in 0..4 {
        let (status, body, _) = start(&app, &format!("+3361234567{n}")).await;
        assert_eq!(status, 201, "code {n} to FR: {body}");
        clock.advance(TimeDelta::seconds(2));
    }
    let (status, problem, _) = start(&app, "+33612345679").await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["risk"]["reasons"][0]["code"], "budget_exhausted");
    assert!(app
        .metrics()
        .await
        .contains(&r#"sms_notify_budget_warnings_total{scope="country"} 2"#.to_owned()));

    // The next UTC day starts again.
    clock.advance(TimeDelta::seconds(until_midnight));
    let (status, body, _) = start(&app, "+447700900003").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_monitored_budget_lets_the_code_go_and_records_the_finding() {
    let app = TestApp::spawn_with(&[
        ("FRAUD_POLICY_BUDGET", "monitor"),
        ("SMS_PRICES", "*:0.05"),
        ("BUDGET_DAILY_TOTAL", "0.05"),
    ])
    .await;
    app.twilio_accepts("SM00000000000000000000000000000026")
        .await;
    let (status, first, _) = start(&app, "+447700900001").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["risk"]["action"], "allow");
    let (status, second, _) = start(&app, "+447700900002").await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(
        second["risk"],
        json!({"action": "monitor", "reasons": [{
            "code": "budget_exhausted",
            "detail": "the daily total: 0.05 of 0.05 USD spent today, and this message costs about 0.05"
        }]})
    );
}

/// Sends a message under `key`; the status and body, and the `Retry-After` header if any.
async fn send_message(app: &TestApp, key: &str, body: Value) -> (u16, Value, Option<i64>) {
    let response = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .bearer_auth(crate::support::API_KEY)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (status, response.json().await.unwrap(), retry_after)
}

#[tokio::test]
async fn a_message_that_would_pass_a_daily_budget_is_refused_naming_the_budget_but_a_repeat_is_answered(
) {
    let app = TestApp::spawn_with(&[
        ("SMS_PRICES", "*:0.05"),
        ("BUDGET_DAILY_PER_COUNTRY", "GB:0.10"),
    ])
    .await;
    app.twilio_accepts("SM00000000000000000000000000000027")
        .await;
    let shipped = |to: &str| json!({"to": to, "body": "Your order shipped"});

    // Two one-segment messages to GB spend its 0.10 (by template or by body alike).
    let (status, first, _) = send_message(
        &app,
        "order-1",
        json!({"to": "+447700900001", "template": "two-factor-auth",
               "data": {"code": "424242", "expiryMinutes": 5}}),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    let (status, second, _) = send_message(&app, "order-2", shipped("+447700900002")).await;
    assert_eq!(status, 202, "{second}");

    // A third would pass it: refused, naming the budget, until midnight UTC.
    let midnight_before = domain::budget::until_next_day(chrono::Utc::now()).num_seconds();
    let (status, problem, retry_after) =
        send_message(&app, "order-3", shipped("+447700900003")).await;
    assert_eq!(status, 429, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("budget-exhausted"),
        "{problem}"
    );
    let detail =
        "the daily budget for GB: 0.10 of 0.10 USD spent today, and this message costs about 0.05";
    assert_eq!(problem["detail"], detail);
    assert_eq!(
        problem["risk"],
        json!({"action": "block", "reasons": [{"code": "budget_exhausted", "detail": detail}]})
    );
    // Between the seconds to midnight before the request and after it (rounded up), however
    // long a loaded machine took to answer.
    let midnight_after = domain::budget::until_next_day(chrono::Utc::now()).num_seconds();
    let retry_after = retry_after.expect("a Retry-After");
    assert!(
        (midnight_after..=midnight_before + 1).contains(&retry_after),
        "{retry_after} s, midnight in {midnight_before} s before and {midnight_after} s after"
    );

    // A repeat of an accepted message is answered as before, never refused.
    let (status, again, _) = send_message(
        &app,
        "order-1",
        json!({"to": "+447700900001", "template": "two-factor-auth",
               "data": {"code": "424242", "expiryMinutes": 5}}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    // Another request under a taken key is still the key's reuse, not a budget matter.
    let (status, reused, _) = send_message(&app, "order-2", shipped("+447700900009")).await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["type"], "idempotency-key-reused");

    // Other countries have no budget.
    let (status, us, _) = send_message(&app, "order-4", shipped("+15551234567")).await;
    assert_eq!(status, 202, "{us}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            &r#"sms_notify_fraud_decisions_total{action="block",reason="budget_exhausted"} 1"#
                .to_owned()
        ),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_message_that_fails_for_good_gives_its_budget_back() {
    let app =
        TestApp::spawn_with(&[("SMS_PRICES", "*:0.05"), ("BUDGET_DAILY_TOTAL", "0.05")]).await;
    // Twilio refuses both messages for good: it charges nothing for them.
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(Form::exactly(&[
            ("To", "+447700900001"),
            ("From", FROM),
            ("Body", "Your order shipped"),
        ]))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .expect(2)
        .mount(&app.twilio)
        .await;
    let shipped = json!({"to": "+447700900001", "body": "Your order shipped"});

    let (status, first, _) = send_message(&app, "first", shipped.clone()).await;
    assert_eq!(status, 202, "{first}");
    let (status, refused, _) = send_message(&app, "second", shipped.clone()).await;
    assert_eq!(status, 429, "{refused}");
    app.wait_for_status(first["id"].as_str().unwrap(), "failed")
        .await;

    // Its estimate comes back once the reservations are settled (every few seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let second = loop {
        let (status, second, _) = send_message(&app, "second", shipped.clone()).await;
        if status == 202 {
            break second;
        }
        assert_eq!(status, 429, "{second}");
        assert!(
            std::time::Instant::now() < deadline,
            "the failed message's budget never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    app.wait_for_status(second["id"].as_str().unwrap(), "failed")
        .await;
}
