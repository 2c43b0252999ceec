//! The fraud guard's admin routes over HTTP, as an operator's tooling calls them: admin keys
//! only, blocks placed and lifted by hand, the safe list, the decision log a page at a time, and
//! a change made through one instance seen by another.

use adapters_postgres::PgStore;
use chrono::{DateTime, TimeDelta, Utc};
use domain::fraud::{Action, Decision, Reason, ReasonCode};
use domain::PhoneNumber;
use ports::{FraudStore, LoggedDecision};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{TestApp, API_KEY};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

fn admin_keys() -> String {
    format!("ops:{ADMIN_KEY}")
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(&[("ADMIN_API_KEYS", &admin_keys())]).await
}

/// `method path` with `key` (none: no Authorization header) and a JSON body when given:
/// the status, and the body as JSON (`null` when empty).
async fn call(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let is_problem = response
        .headers()
        .get("content-type")
        .is_some_and(|value| value.as_bytes() == b"application/problem+json");
    let text = response.text().await.unwrap();
    if status >= 400 {
        assert!(is_problem, "{status} is not a problem document: {text}");
    }
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, json)
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(app, Some(ADMIN_KEY), method, path, body).await
}

/// Every admin route, as a client would call it correctly.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/fraud/blocks", None),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+447700900"})),
        ),
        (Method::DELETE, "/v1/fraud/blocks/+447700900", None),
        (Method::GET, "/v1/fraud/safe-list", None),
        (
            Method::POST,
            "/v1/fraud/safe-list",
            Some(json!({"prefix": "+15551234567"})),
        ),
        (
            Method::DELETE,
            "/v1/fraud/safe-list?prefix=%2B15551234567",
            None,
        ),
        (Method::GET, "/v1/fraud/decisions", None),
    ]
}

#[tokio::test]
async fn every_fraud_admin_route_refuses_a_client_key_with_403_and_no_key_with_401() {
    let app = spawn().await;
    for (method, path, body) in routes() {
        let (status, problem) = call(&app, Some(API_KEY), method.clone(), path, body.clone()).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
        assert_eq!(problem["type"], "admin-only", "{method} {path}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("ADMIN_API_KEYS"),
            "{problem}"
        );
        let (status, problem) = call(&app, None, method.clone(), path, body).await;
        assert_eq!(status, 401, "{method} {path}: {problem}");
    }
    // The client key changed nothing.
    let (_, blocks) = admin(&app, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(blocks, json!({"blocks": []}));
    let (_, safe) = admin(&app, Method::GET, "/v1/fraud/safe-list", None).await;
    assert_eq!(safe, json!({"entries": []}));
}

#[tokio::test]
async fn an_admin_blocks_a_prefix_by_hand_sees_it_listed_and_unblocks_it() {
    let app = spawn().await;
    let (status, block) = admin(
        &app,
        Method::POST,
        "/v1/fraud/blocks",
        Some(json!({"prefix": "+44 7700 900", "note": "carrier report #12", "hours": 48})),
    )
    .await;
    assert_eq!(status, 201, "{block}");
    assert_eq!(block["prefix"], "+447700900");
    assert_eq!(block["manual"], true);
    assert_eq!(
        block["reasons"],
        json!([{"code": "manual_block", "detail": "blocked by hand by ops: carrier report #12"}])
    );
    let created: DateTime<Utc> = block["created_at"].as_str().unwrap().parse().unwrap();
    let expires: DateTime<Utc> = block["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires - created, TimeDelta::hours(48));

    // One until lifted, on a whole number.
    let (status, forever) = admin(
        &app,
        Method::POST,
        "/v1/fraud/blocks",
        Some(json!({"prefix": "+15551234567"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(forever["expires_at"], Value::Null);

    let (status, list) = admin(&app, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(status, 200);
    let prefixes: Vec<&str> = list["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|block| block["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["+15551234567", "+447700900"]);
    assert_eq!(list["blocks"][1], block);

    let (status, body) = admin(&app, Method::DELETE, "/v1/fraud/blocks/+447700900", None).await;
    assert_eq!((status, body), (204, Value::Null));
    // Exactly the prefix: a longer or shorter one is not the block.
    let (status, problem) = admin(&app, Method::DELETE, "/v1/fraud/blocks/%2B4477009", None).await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) = admin(&app, Method::DELETE, "/v1/fraud/blocks/+447700900", None).await;
    assert_eq!(status, 404);
    assert_eq!(problem["type"], "not-found");
    assert!(problem["detail"].as_str().unwrap().contains("+447700900"));

    let (_, list) = admin(&app, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(list["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(list["blocks"][0]["prefix"], "+15551234567");
}

#[tokio::test]
async fn a_bad_prefix_note_or_period_is_a_422_naming_the_field() {
    let app = spawn().await;
    let cases = [
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "447700900"})),
            "prefix",
            "invalid-prefix",
        ),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+44a"})),
            "prefix",
            "invalid-prefix",
        ),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+44", "hours": 0})),
            "hours",
            "invalid-block-period",
        ),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+44", "hours": 721})),
            "hours",
            "invalid-block-period",
        ),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+44", "note": "x".repeat(201)})),
            "note",
            "invalid-note",
        ),
        (
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+44", "reason": "spam"})),
            "reason",
            "invalid-body",
        ),
        (
            Method::DELETE,
            "/v1/fraud/blocks/0044",
            None,
            "prefix",
            "invalid-prefix",
        ),
        (
            Method::POST,
            "/v1/fraud/safe-list",
            Some(json!({"prefix": "+1234567890123456"})),
            "prefix",
            "invalid-prefix",
        ),
        (
            Method::POST,
            "/v1/fraud/safe-list",
            Some(json!({"prefix": "+1555", "note": "two\nlines"})),
            "note",
            "invalid-note",
        ),
        (
            Method::DELETE,
            "/v1/fraud/safe-list?prefix=1555",
            None,
            "prefix",
            "invalid-prefix",
        ),
        (
            Method::DELETE,
            "/v1/fraud/safe-list",
            None,
            "prefix",
            "invalid-query",
        ),
        (
            Method::GET,
            "/v1/fraud/decisions?action=deny",
            None,
            "action",
            "invalid-query",
        ),
        (
            Method::GET,
            "/v1/fraud/decisions?cursor=nope",
            None,
            "cursor",
            "invalid-cursor",
        ),
        (
            Method::GET,
            "/v1/fraud/decisions?limit=101",
            None,
            "limit",
            "invalid-limit",
        ),
    ];
    for (method, path, body, field, kind) in cases {
        let (status, problem) = admin(&app, method.clone(), path, body).await;
        assert_eq!(status, 422, "{method} {path}: {problem}");
        assert_eq!(problem["field"], field, "{method} {path}: {problem}");
        assert_eq!(problem["type"], kind, "{method} {path}: {problem}");
    }
    let (_, problem) = admin(
        &app,
        Method::POST,
        "/v1/fraud/blocks",
        Some(json!({"prefix": "447700900"})),
    )
    .await;
    assert_eq!(
        problem["detail"],
        "`447700900` is not a number prefix: `+` and 1 to 15 digits, such as +447700900"
    );
    // Nothing was placed by the refused requests.
    let (_, blocks) = admin(&app, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(blocks, json!({"blocks": []}));
}

#[tokio::test]
async fn the_safe_list_takes_ranges_and_whole_numbers_replaces_notes_and_removes_entries() {
    let app = spawn().await;
    for body in [
        json!({"prefix": "+4477009", "note": "partner range"}),
        json!({"prefix": "+15551234567", "note": "QA phone"}),
        json!({"prefix": "+4477009", "note": "partner range, contract 7"}),
    ] {
        let (status, entry) = admin(
            &app,
            Method::POST,
            "/v1/fraud/safe-list",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 201, "{entry}");
        assert_eq!(entry["prefix"], body["prefix"]);
        assert_eq!(entry["note"], body["note"]);
    }
    let (status, list) = admin(&app, Method::GET, "/v1/fraud/safe-list", None).await;
    assert_eq!(status, 200);
    let entries: Vec<(&str, &str)> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["prefix"].as_str().unwrap(),
                entry["note"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("+15551234567", "QA phone"),
            ("+4477009", "partner range, contract 7")
        ]
    );

    let (status, _) = admin(
        &app,
        Method::DELETE,
        "/v1/fraud/safe-list?prefix=%2B4477009",
        None,
    )
    .await;
    assert_eq!(status, 204);
    // A `+` left unencoded arrives as a space, and still reads.
    let (status, _) = admin(
        &app,
        Method::DELETE,
        "/v1/fraud/safe-list?prefix=+15551234567",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, problem) = admin(
        &app,
        Method::DELETE,
        "/v1/fraud/safe-list?prefix=%2B4477009",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(problem["detail"], "+4477009 is not on the safe list");
    let (_, list) = admin(&app, Method::GET, "/v1/fraud/safe-list", None).await;
    assert_eq!(list, json!({"entries": []}));
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

fn logged(minutes: i64, action: Action, to: &str) -> LoggedDecision {
    let reasons = match action {
        Action::Allow => vec![],
        _ => vec![Reason::new(
            ReasonCode::PrefixLowConversion,
            "0 of 40 codes to +447700900 checked",
        )],
    };
    LoggedDecision {
        id: uuid::Uuid::now_v7(),
        at: at(minutes),
        to: PhoneNumber::parse(to).unwrap(),
        api_key: "auth".into(),
        client_ip: Some("203.0.113.9".into()),
        user_id: (action == Action::Block).then(|| "user-4711".to_owned()),
        trusted: action == Action::Monitor,
        verification_id: None,
        decision: Decision { action, reasons },
    }
}

/// The log as the guard writes it (in the shared database), read through the admin route.
#[tokio::test]
async fn the_decision_log_is_listed_newest_first_by_action_and_time_a_page_at_a_time() {
    // Its decisions are dated in March 2026: kept past retention's first run at startup.
    let app = TestApp::spawn_on_postgres_with(&[
        ("ADMIN_API_KEYS", &admin_keys()),
        ("RETENTION_DAYS", "36500"),
    ])
    .await;
    let store = PgStore::connect(&app.database().url, 2).await.unwrap();
    let decisions = [
        logged(0, Action::Allow, "+15551234567"),
        logged(10, Action::Block, "+447700900123"),
        logged(20, Action::Monitor, "+447700900456"),
        logged(30, Action::Block, "+447700900789"),
    ];
    for decision in &decisions {
        store.log_decision(decision).await.unwrap();
    }

    let (status, first) = admin(&app, Method::GET, "/v1/fraud/decisions?limit=3", None).await;
    assert_eq!(status, 200, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|decision| decision["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |index: usize| decisions[index].id.to_string();
    assert_eq!(ids(&first), [id(3), id(2), id(1)]);
    assert_eq!(
        first["decisions"][0],
        json!({
            "id": id(3),
            "at": "2026-03-01T12:30:00Z",
            "to": "+447700900***",
            "api_key": "auth",
            "client_ip": "203.0.113.9",
            "user_id": "user-4711",
            "trusted": false,
            "verification_id": null,
            "risk": {
                "action": "block",
                "reasons": [{"code": "prefix_low_conversion", "detail": "0 of 40 codes to +447700900 checked"}]
            }
        })
    );
    assert_eq!(first["decisions"][1]["trusted"], true);
    assert_eq!(first["decisions"][1]["user_id"], Value::Null);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = admin(
        &app,
        Method::GET,
        &format!("/v1/fraud/decisions?limit=3&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&second), [id(0)]);
    assert!(second.get("next_cursor").is_none(), "{second}");

    let (_, blocks) = admin(&app, Method::GET, "/v1/fraud/decisions?action=block", None).await;
    assert_eq!(ids(&blocks), [id(3), id(1)]);
    let (_, window) = admin(
        &app,
        Method::GET,
        "/v1/fraud/decisions?since=2026-03-01T12:10:00Z&until=2026-03-01T12:30:00Z",
        None,
    )
    .await;
    assert_eq!(ids(&window), [id(2), id(1)]);
    // No whole number in the admin's view of the log.
    for page in [&first, &second] {
        for number in [
            "+15551234567",
            "+447700900123",
            "+447700900456",
            "+447700900789",
        ] {
            assert!(!page.to_string().contains(number), "{page}");
        }
    }
}

/// Blocks and the safe list live in the shared database: what an admin changes through one
/// instance, another shows at once.
#[tokio::test]
async fn a_block_placed_through_one_instance_is_listed_and_lifted_through_another() {
    let first = TestApp::spawn_on_postgres_with(&[("ADMIN_API_KEYS", &admin_keys())]).await;
    let second = first
        .spawn_sibling(&[("ADMIN_API_KEYS", &admin_keys())])
        .await;
    let (status, _) = admin(
        &first,
        Method::POST,
        "/v1/fraud/blocks",
        Some(json!({"prefix": "+447700900", "hours": 2})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = admin(
        &first,
        Method::POST,
        "/v1/fraud/safe-list",
        Some(json!({"prefix": "+15551234567"})),
    )
    .await;
    assert_eq!(status, 201);

    let (_, blocks) = admin(&second, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(blocks["blocks"][0]["prefix"], "+447700900");
    let (_, safe) = admin(&second, Method::GET, "/v1/fraud/safe-list", None).await;
    assert_eq!(safe["entries"][0]["prefix"], "+15551234567");

    let (status, _) = admin(&second, Method::DELETE, "/v1/fraud/blocks/+447700900", None).await;
    assert_eq!(status, 204);
    let (_, blocks) = admin(&first, Method::GET, "/v1/fraud/blocks", None).await;
    assert_eq!(blocks, json!({"blocks": []}));
}
