//! The read side of the API as a client team uses it: templates and their previews, the
//! message list, usage reports, and the problem documents of every kind of mistake.

use serde_json::{json, Value};

use crate::support::{TestApp, API_KEY};

#[tokio::test]
async fn templates_list_their_variables_and_preview_their_cost() {
    let app = TestApp::spawn_default().await;
    let (status, list) = app.get("/v1/templates").await;
    assert_eq!(status, 200);
    let templates = list["templates"].as_array().unwrap();
    let names: Vec<&Value> = templates.iter().map(|template| &template["name"]).collect();
    assert_eq!(
        names,
        [
            "two-factor-auth",
            "two-factor-auth-transaction",
            "two-factor-auth-transaction-voice",
            "two-factor-auth-voice"
        ],
        "{list}"
    );
    let sms = &templates[0];
    // `brand` has a default, the configured one: `data` need not hold it.
    assert_eq!(sms["variables"], json!(["code", "expiryMinutes"]), "{sms}");
    assert_eq!(sms["sensitive"], true);
    let locales = sms["locales"].as_array().unwrap();
    assert!(locales.len() >= 32, "{sms}");
    for locale in ["en", "fr", "pt-BR", "zh-HK"] {
        assert!(locales.contains(&json!(locale)), "{locale}: {sms}");
    }
    assert_eq!(
        templates[1]["variables"],
        json!(["amount", "code", "currency", "expiryMinutes", "payee"])
    );
    assert_eq!(
        templates[3]["variables"],
        json!(["code_digits", "expiryMinutes"])
    );

    let preview = |data: Value| {
        app.post(
            "/v1/templates/two-factor-auth/preview",
            json!({"data": data}),
        )
    };
    let (status, short) = preview(json!({"code": "123456", "expiryMinutes": 10})).await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(short["encoding"], "GSM-7");
    assert_eq!(short["characters"], 121);
    assert_eq!(short["segments"], 1);
    assert!(short.get("warning").is_none(), "{short}");

    // One character outside GSM-7 makes it UCS-2: 70 per segment, so two.
    let (_, long) = preview(json!({"code": "123456", "expiryMinutes": "dix ✓ “env.”"})).await;
    assert_eq!(long["encoding"], "UCS-2");
    assert_eq!(long["segments"], 2);
    assert_eq!(
        long["warning"],
        "this text takes 2 segments, each billed as one SMS; it is UCS-2, less than half as \
         many characters a segment as GSM-7, because of `✓`, `“`, `”`"
    );

    let (status, missing) = preview(json!({"code": "123456"})).await;
    assert_eq!(
        (status, missing["field"].as_str()),
        (422, Some("data.expiryMinutes"))
    );
    let (status, _) = app
        .post(
            "/v1/templates/no-such-template/preview",
            json!({"data": {}}),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_message_list_pages_newest_first_and_filters() {
    let app = TestApp::spawn_default().await;
    let mut ids = Vec::new();
    for to in ["+15551234567", "+447700900123", "+15551234567"] {
        let (status, message) = app
            .post("/v1/messages", json!({"to": to, "body": "Hi"}))
            .await;
        assert_eq!(status, 202, "{message}");
        ids.push(message["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();

    let (status, first) = app.get("/v1/messages?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!("/v1/messages?limit=2&cursor={cursor}"))
        .await;
    assert!(second.get("next_cursor").is_none(), "{second}");
    let listed: Vec<&str> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["messages"].as_array().unwrap())
        .map(|message| message["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, newest_first);

    // A `+` left unencoded arrives as a space; it still means the number.
    for query in ["to=%2B447700900123", "to=+447700900123"] {
        let (_, page) = app.get(&format!("/v1/messages?{query}")).await;
        let found: Vec<&str> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["id"].as_str().unwrap())
            .collect();
        assert_eq!(found, [ids[1].as_str()], "{query}");
    }
}

#[tokio::test]
async fn the_usage_report_groups_by_what_was_asked() {
    let app = TestApp::spawn_default().await;
    for (to, body) in [
        ("+15551234567", "Hi"),
        ("+447700900123", "Hi"),
        ("+447700900124", &"a".repeat(200)),
    ] {
        let (status, _) = app
            .post("/v1/messages", json!({"to": to, "body": body}))
            .await;
        assert_eq!(status, 202);
    }
    let (status, report) = app.get("/v1/reports/usage?group_by=country").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["group_by"], "country");
    let groups: Vec<(String, u64, u64)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            (
                group["key"].as_str().unwrap().to_owned(),
                group["messages"].as_u64().unwrap(),
                group["segments"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("GB".into(), 2, 3), ("US".into(), 1, 1)]);
    assert_eq!(report["groups"][0]["cost"], json!([]));

    let (status, by_key) = app.get("/v1/reports/usage?group_by=api_key").await;
    assert_eq!(status, 200);
    assert_eq!(by_key["groups"][0]["key"], "auth");
    assert_eq!(by_key["groups"][0]["messages"], 3);
}

#[tokio::test]
async fn every_kind_of_mistake_is_a_problem_document_naming_what_is_wrong() {
    let app = TestApp::spawn_default().await;
    let cases: [(&str, u16, Option<&str>); 6] = [
        ("/v1/messages?limit=1000", 422, Some("limit")),
        ("/v1/messages?colour=red", 422, Some("colour")),
        ("/v1/messages?cursor=not-a-cursor", 422, Some("cursor")),
        ("/v1/messages?since=yesterday", 422, Some("since")),
        ("/v1/reports/usage?group_by=planet", 422, Some("group_by")),
        (
            "/v1/reports/usage?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            422,
            Some("since"),
        ),
    ];
    for (path, status, field) in cases {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status, "{path}: {problem}");
        assert_eq!(problem["field"].as_str(), field, "{path}: {problem}");
    }

    let wrong_method = app
        .client
        .delete(format!("{}/v1/messages", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let allow = wrong_method.headers()["allow"].to_str().unwrap().to_owned();
    for method in ["GET", "POST"] {
        assert!(allow.split(',').any(|m| m == method), "Allow: {allow}");
    }
    assert_eq!(
        wrong_method.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = wrong_method.json().await.unwrap();
    assert_eq!(problem["type"], "method-not-allowed");

    let too_large = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"to": "+15551234567", "body": "{}"}}"#,
            "a".repeat(70_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let problem: Value = too_large.json().await.unwrap();
    assert_eq!(problem["type"], "body-too-large");
}

/// Tenants apart: a client key's report covers its own messages, even grouped by key; an
/// admin key's covers every key's.
#[tokio::test]
async fn a_client_keys_usage_report_sees_only_its_messages_and_an_admin_key_sees_all() {
    const BILLING_KEY: &str = "billing-key-0123456789abcdef";
    const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
    let app = TestApp::spawn_with(&[
        ("API_KEYS", &format!("auth:{API_KEY},billing:{BILLING_KEY}")),
        ("ADMIN_API_KEYS", &format!("ops:{ADMIN_KEY}")),
    ])
    .await;
    app.twilio_accepts("SM0123456789abcdef0123456789abcdef")
        .await;
    for key in [API_KEY, API_KEY, BILLING_KEY] {
        let response = app
            .client
            .post(format!("{}/v1/messages", app.base))
            .bearer_auth(key)
            .json(&json!({"to": "+15551234567", "body": "Hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let report_by_key = |key: &'static str| {
        let request = app
            .client
            .get(format!("{}/v1/reports/usage?group_by=api_key", app.base))
            .bearer_auth(key);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let report: Value = response.json().await.unwrap();
            report["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|group| {
                    (
                        group["key"].as_str().unwrap().to_owned(),
                        group["messages"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    assert_eq!(report_by_key(API_KEY).await, [("auth".to_owned(), 2)]);
    assert_eq!(
        report_by_key(BILLING_KEY).await,
        [("billing".to_owned(), 1)]
    );
    assert_eq!(
        report_by_key(ADMIN_KEY).await,
        [("auth".to_owned(), 2), ("billing".to_owned(), 1)]
    );
}
