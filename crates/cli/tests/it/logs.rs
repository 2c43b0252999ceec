//! What the CLI writes to stderr besides its error line: its log, readable or JSON as
//! `LOG_FORMAT` says, and no warning about a provider on a command that sends nothing.

use crate::support::Operator;

#[tokio::test(flavor = "multi_thread")]
async fn commands_that_send_nothing_say_nothing_of_the_console_standing_in_for_a_provider() {
    let operator = Operator::new().await;
    for args in [
        &["report"][..],
        &["messages", "list"][..],
        &[
            "render", "shipping", "--data", "name=Ann", "--data", "order=7",
        ][..],
    ] {
        let run = operator.run_with_console(&[], args).await;
        run.succeeded();
        assert_eq!(run.stderr(), "", "{args:?}");
    }
    let check = operator
        .run_with_console(&[], &["verify", "check", "+15551234567", "123456"])
        .await;
    check.failed();
    assert_eq!(check.stderr().lines().count(), 1, "{}", check.stderr());

    // Where an SMS is to go, the warning still says it is only printed.
    let send = operator
        .run_with_console(&[], &["send", "--to", "+15551234567", "--body", "Hello"])
        .await;
    send.succeeded();
    assert!(
        send.stderr().contains("console provider"),
        "{}",
        send.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_log_format_json_every_line_the_cli_logs_is_json() {
    let operator = Operator::new().await;
    let send = operator
        .run_with_console(
            &[("LOG_FORMAT", "json")],
            &["send", "--to", "+15551234567", "--body", "Hello"],
        )
        .await;
    send.succeeded();
    let stderr = send.stderr();
    let entries: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}\n{stderr}"))
        })
        .collect();
    assert!(
        entries.iter().any(|entry| entry["body"] == "Hello"),
        "no console line with the SMS in:\n{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_check_finding_nothing_names_the_key_name_it_looked_under() {
    let operator = Operator::new().await;
    let check = operator
        .run_with_console(&[], &["verify", "check", "+15551234567", "123456"])
        .await;
    check.failed();
    let stderr = check.stderr();
    assert!(stderr.contains("API key name `cli`"), "{stderr}");
    assert!(stderr.contains("--api-key-name"), "{stderr}");
    assert!(stderr.contains("`default`"), "{stderr}");

    let as_ops = operator
        .run_with_console(
            &[],
            &[
                "--api-key-name",
                "ops",
                "verify",
                "check",
                "+15551234567",
                "123456",
            ],
        )
        .await;
    as_ops.failed();
    assert!(
        as_ops.stderr().contains("API key name `ops`"),
        "{}",
        as_ops.stderr()
    );
}
