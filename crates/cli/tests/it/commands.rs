//! The commands that read what was sent (`messages`, `report`), `--json`, and the exit codes
//! of a dependency that fails.

use crate::support::Operator;

/// Sends `Hello` to +15551234567 with `--json`; returns the message's document.
async fn send_hello(operator: &Operator) -> serde_json::Value {
    operator
        .twilio_expects_sms("+15551234567", "Hello", "SMhello")
        .await;
    let run = operator
        .run(&["send", "--to", "+15551234567", "--body", "Hello", "--json"])
        .await;
    run.succeeded();
    run.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_show_and_list_print_the_apis_message_documents() {
    let operator = Operator::new().await;
    let sent = send_hello(&operator).await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["provider_sid"], "SMhello", "{sent}");
    let id = sent["id"].as_str().unwrap();

    let show = operator.run(&["messages", "show", id, "--json"]).await;
    show.succeeded();
    let message = show.json();
    assert_eq!(message["id"], id, "{message}");
    assert_eq!(message["attempts"][0]["outcome"], "sent", "{message}");

    let list = operator
        .run(&[
            "messages", "list", "--status", "sent", "--since", "1h", "--json",
        ])
        .await;
    list.succeeded();
    let page = list.json();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["messages"][0]["id"], id, "{page}");
    let none = operator
        .run(&["messages", "list", "--status", "failed", "--json"])
        .await;
    assert_eq!(none.json()["messages"], serde_json::json!([]));

    // Another API key name's message does not exist for this one.
    let other = operator
        .run(&["--api-key-name", "other", "messages", "show", id])
        .await;
    other.failed();
    assert!(other.stderr().contains("no message"), "{}", other.stderr());
    operator
        .run(&["messages", "show", "not-an-id"])
        .await
        .exited_with(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_groups_by_template_with_its_cost_column_or_as_the_apis_document() {
    let operator = Operator::new().await;
    send_hello(&operator).await;

    let table = operator.run(&["report", "--group-by", "status"]).await;
    table.succeeded();
    let stdout = table.stdout();
    let header: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "status",
            "messages",
            "segments",
            "delivered",
            "failed",
            "delivery rate",
            "cost"
        ],
        "{stdout}"
    );
    assert!(
        stdout.lines().nth(1).unwrap().starts_with("sent "),
        "{stdout}"
    );

    let json = operator
        .run(&["report", "--group-by", "template", "--json"])
        .await;
    json.succeeded();
    let report = json.json();
    assert_eq!(report["group_by"], "template", "{report}");
    assert_eq!(
        report["groups"][0]["key"],
        serde_json::Value::Null,
        "{report}"
    );
    assert_eq!(report["groups"][0]["messages"], 1, "{report}");
    assert_eq!(
        report["groups"][0]["cost"],
        serde_json::json!([]),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn render_json_uses_the_locales_variant() {
    let operator = Operator::new().await;
    operator.write(
        "templates/shipping.fr.hbs",
        "Bonjour {{name}}, commande {{order}} partie.",
    );

    let run = operator
        .run(&[
            "render",
            "shipping",
            "--locale",
            "fr-CA",
            "--data",
            "name=Zoé",
            "--data",
            "order=A-1",
            "--json",
        ])
        .await;

    run.succeeded();
    let rendered = run.json();
    assert_eq!(rendered["template"], "shipping.fr", "{rendered}");
    assert_eq!(
        rendered["text"], "Bonjour Zoé, commande A-1 partie.",
        "{rendered}"
    );
    assert_eq!(rendered["encoding"], "GSM-7", "{rendered}");
    assert_eq!(rendered["segments"], 1, "{rendered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_cannot_be_reached_exits_3() {
    let operator = Operator::new().await;

    let run = operator
        .run_with(
            &[
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing"),
                ("CODE_PEPPER", "cli-pepper-0123456789abcdef0123456789"),
            ],
            &["report", "--json"],
        )
        .await;

    run.exited_with(3);
    assert_eq!(run.stdout(), "");
    assert!(run.stderr().contains("database"), "{}", run.stderr());
}
