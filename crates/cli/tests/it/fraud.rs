//! `sms-notify fraud ...` as an operator runs it: blocks by hand and the safe list on the
//! embedded database, exit codes for what is not there and for bad input, and an unblock from
//! the CLI on the PostgreSQL database a running service shares, which the service's admin
//! routes then show.

use std::collections::HashMap;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use ports::FraudStore;
use serde_json::{json, Value};

use crate::support::Operator;

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_blocked_by_hand_is_listed_with_its_reason_and_unblocked_once() {
    let operator = Operator::new().await;
    let run = |args: &'static [&'static str]| operator.run_with_console(&[], args);

    let block = run(&[
        "--api-key-name",
        "alice",
        "fraud",
        "block",
        "+447700900",
        "--note",
        "carrier report 12",
        "--hours",
        "48",
    ])
    .await;
    block.succeeded();
    assert!(
        block.stdout().starts_with("blocked +447700900 until 20"),
        "{}",
        block.stdout()
    );
    run(&["fraud", "block", "+15551234567"]).await.succeeded();

    let list = run(&["fraud", "list"]).await;
    list.succeeded();
    let stdout = list.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("prefix"), "{stdout}");
    assert!(lines[1].starts_with("+15551234567"), "{stdout}");
    assert!(lines[1].contains("until lifted"), "{stdout}");
    assert!(
        lines[1].ends_with("manual_block  blocked by hand by cli"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("+447700900"), "{stdout}");
    assert!(lines[2].contains("(in 47h)"), "{stdout}");
    assert!(
        lines[2].ends_with("manual_block  blocked by hand by alice: carrier report 12"),
        "{stdout}"
    );

    // --json prints GET /v1/fraud/blocks' document.
    let json = run(&["fraud", "list", "--json"]).await.json();
    assert_eq!(json["blocks"].as_array().unwrap().len(), 2);
    assert_eq!(json["blocks"][1]["prefix"], "+447700900");
    assert_eq!(json["blocks"][1]["manual"], true);
    assert_eq!(
        json["blocks"][1]["reasons"],
        json!([{"code": "manual_block", "detail": "blocked by hand by alice: carrier report 12"}])
    );

    let unblock = run(&["fraud", "unblock", "+447700900"]).await;
    unblock.succeeded();
    assert_eq!(unblock.stdout(), "unblocked +447700900\n");
    let again = run(&["fraud", "unblock", "+447700900"]).await;
    again.failed();
    assert!(
        again
            .stderr()
            .contains("no block is in force on exactly +447700900"),
        "{}",
        again.stderr()
    );
    let json = run(&["fraud", "list", "--json"]).await.json();
    assert_eq!(json["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(json["blocks"][0]["prefix"], "+15551234567");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_prefix_period_or_note_is_a_usage_error_and_changes_nothing() {
    let operator = Operator::new().await;
    let run = |args: &'static [&'static str]| operator.run_with_console(&[], args);
    for (args, says) in [
        (
            &["fraud", "block", "447700900"][..],
            "is not a number prefix",
        ),
        (
            &["fraud", "block", "+44", "--hours", "0"][..],
            "is not a block period",
        ),
        (
            &["fraud", "block", "+44", "--note", " "][..],
            "leave --note out",
        ),
        (&["fraud", "unblock", "+44x"][..], "is not a number prefix"),
        (
            &["fraud", "safe-list", "add", "+"][..],
            "is not a number prefix",
        ),
        (
            &["fraud", "decisions", "--action", "deny"][..],
            "expected allow, monitor or block",
        ),
    ] {
        let refused = operator.run_with_console(&[], args).await;
        refused.exited_with(2);
        assert!(
            refused.stderr().contains(says),
            "{args:?}: {}",
            refused.stderr()
        );
    }
    assert_eq!(
        run(&["fraud", "list"]).await.stdout(),
        "no blocks in force\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_safe_list_is_added_to_listed_and_removed_from() {
    let operator = Operator::new().await;
    let run = |args: &'static [&'static str]| operator.run_with_console(&[], args);

    assert_eq!(
        run(&["fraud", "safe-list", "list"]).await.stdout(),
        "the safe list is empty\n"
    );
    let added = run(&[
        "fraud",
        "safe-list",
        "add",
        "+15551234567",
        "--note",
        "QA phone",
    ])
    .await;
    added.succeeded();
    assert_eq!(added.stdout(), "+15551234567 is on the safe list\n");
    let json = run(&["--json", "fraud", "safe-list", "add", "+4477009"])
        .await
        .json();
    assert_eq!(json["prefix"], "+4477009");
    assert_eq!(json["note"], Value::Null);

    let list = run(&["fraud", "safe-list", "list"]).await;
    let stdout = list.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[1].starts_with("+15551234567") && lines[1].ends_with("QA phone"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("+4477009") && lines[2].ends_with('-'),
        "{stdout}"
    );

    run(&["fraud", "safe-list", "remove", "+15551234567"])
        .await
        .succeeded();
    let again = run(&["fraud", "safe-list", "remove", "+15551234567"]).await;
    again.failed();
    assert!(
        again.stderr().contains("is not on the safe list"),
        "{}",
        again.stderr()
    );
    let json = run(&["fraud", "safe-list", "list", "--json"]).await.json();
    assert_eq!(json["entries"].as_array().unwrap().len(), 1);
    assert_eq!(json["entries"][0]["prefix"], "+4477009");
}

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const CLIENT_KEY: &str = "client-key-0123456789abcdef";

/// The service on `database_url` in this process, with an admin key; its address.
async fn serve(database_url: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let env: HashMap<&str, String> = HashMap::from([
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        (
            "CODE_PEPPER",
            "cli-pepper-0123456789abcdef0123456789".to_owned(),
        ),
        ("SMS_PROVIDERS", "console".to_owned()),
        ("ADMIN_API_KEYS", format!("ops:{ADMIN_KEY}")),
        ("API_KEYS", format!("auth:{CLIENT_KEY}")),
    ]);
    let config = app::Config::from_lookup(|name| env.get(name).cloned()).unwrap();
    let server = app::Server::build(config).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// The operator's unblock goes to the database the service reads: the store holds no block
/// any more, the service's admin route shows none, and the service, another instance than the
/// CLI's, sends codes to the prefix again within a second.
#[tokio::test(flavor = "multi_thread")]
async fn an_unblock_from_the_cli_on_the_services_postgres_database_lifts_the_services_block() {
    let database = TestDatabase::create().await;
    let (base, _stop) = serve(&database.url).await;
    let client = reqwest::Client::new();
    let blocks = || async {
        let response = client
            .get(format!("{base}/v1/fraud/blocks"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let placed = client
        .post(format!("{base}/v1/fraud/blocks"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"prefix": "+447700900", "note": "pumping seen by the carrier"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let start = || async {
        let response = client
            .post(format!("{base}/v1/verifications"))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"to": "+447700900123", "user_id": "user-4711"}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    let (status, refused) = start().await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["risk"]["reasons"][0]["code"], "manual_block");

    let operator = Operator::new().await;
    // The refusal is in the decision log, with the user the service named.
    let logged = operator
        .run_on_postgres_without_a_provider(&database.url, &["fraud", "decisions"])
        .await;
    logged.succeeded();
    let stdout = logged.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("user"), "{stdout}");
    assert!(lines[1].contains("+447700900***"), "{stdout}");
    assert!(
        lines[1].contains("user-4711") && lines[1].ends_with("manual_block"),
        "{stdout}"
    );
    let listed = operator
        .run_on_postgres_without_a_provider(&database.url, &["fraud", "list", "--json"])
        .await;
    assert_eq!(listed.json(), blocks().await);

    operator
        .run_on_postgres_without_a_provider(&database.url, &["fraud", "unblock", "+447700900"])
        .await
        .succeeded();

    let store = PgStore::connect(&database.url, 1).await.unwrap();
    assert_eq!(store.blocks(chrono::Utc::now()).await.unwrap(), []);
    assert_eq!(blocks().await, json!({"blocks": []}));
    // The service reads blocks at most a second old: its next codes to the prefix go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, started) = start().await;
        if status == 201 {
            assert_eq!(started["risk"]["action"], "allow", "{started}");
            break;
        }
        assert_eq!(status, 429, "{started}");
        assert!(
            std::time::Instant::now() < deadline,
            "the service still refuses codes to the unblocked prefix"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // And the other way: a safe-list entry added by the CLI is the service's.
    operator
        .run_on_postgres_without_a_provider(
            &database.url,
            &["fraud", "safe-list", "add", "+15551234567"],
        )
        .await
        .succeeded();
    let safe: Value = client
        .get(format!("{base}/v1/fraud/safe-list"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(safe["entries"][0]["prefix"], "+15551234567");
}
