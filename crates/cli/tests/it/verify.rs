//! `verify start`, `check` and `cancel` across separate runs of the binary: a code sent
//! through Twilio approves once, a payment's code approves only that payment, and a canceled
//! verification approves nothing.

use wiremock::matchers::{basic_auth, method, path};
use wiremock::Mock;
use wiremock_form::Form;

use crate::support::{accepted, Operator, ACCOUNT_SID, AUTH_TOKEN, FROM, MESSAGES_PATH};

/// A two-factor SMS to `+15551234567`: exactly To, From, Body with a code, and a validity of
/// about the code's ten minutes.
fn code_sms() -> Form {
    Form::exactly(&[("To", "+15551234567"), ("From", FROM)])
        .field_where("Body", |body| body.contains("verification code is: "))
        .field_where("ValidityPeriod", |seconds| {
            seconds
                .parse::<u64>()
                .is_ok_and(|seconds| (590..=600).contains(&seconds))
        })
}

fn code_in(body: &str) -> String {
    let start = body.find("is: ").unwrap() + 4;
    body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_sent_by_verify_start_is_approved_by_verify_check_in_another_run() {
    let operator = Operator::new().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(code_sms())
        .respond_with(accepted("SMcode"))
        .expect(1)
        .mount(&operator.twilio)
        .await;

    let started = operator.run(&["verify", "start", "+15551234567"]).await;
    started.succeeded();
    let stdout = started.stdout();
    assert!(stdout.contains("status       pending"), "{stdout}");
    assert!(
        stdout.contains("code SMS     sent        provider_sid=SMcode"),
        "{stdout}"
    );
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("verification "))
        .unwrap()
        .trim()
        .to_owned();
    let code = code_in(&operator.received_forms().await[0]["Body"]);
    let wrong = if code == "000000" { "111111" } else { "000000" };

    let refused = operator.run(&["verify", "check", &id, wrong]).await;
    refused.failed();
    assert!(
        refused.stdout().contains("valid         false"),
        "{}",
        refused.stdout()
    );
    assert!(
        refused.stdout().contains("attempts_left 4"),
        "{}",
        refused.stdout()
    );

    let approved = operator.run(&["verify", "check", &id, &code]).await;
    approved.succeeded();
    assert!(
        approved.stdout().contains("status        approved"),
        "{}",
        approved.stdout()
    );

    // Approval is single-use: the same code again is refused, in words that approve nothing.
    let again = operator.run(&["verify", "check", &id, &code]).await;
    again.failed();
    assert!(
        again
            .stdout()
            .contains("refused       the verification is no longer pending"),
        "{}",
        again.stdout()
    );
    assert!(!again.stdout().contains("approved"), "{}", again.stdout());
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_cancel_ends_a_verification_so_that_its_code_approves_nothing() {
    let operator = Operator::new().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(code_sms())
        .respond_with(accepted("SMcode"))
        .expect(1)
        .mount(&operator.twilio)
        .await;
    let started = operator
        .run(&["verify", "start", "+15551234567", "--json"])
        .await;
    started.succeeded();
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let code = code_in(&operator.received_forms().await[0]["Body"]);

    let canceled = operator.run(&["verify", "cancel", &id, "--json"]).await;
    canceled.succeeded();
    let view = canceled.json();
    assert_eq!(view["status"], "canceled", "{view}");
    assert_eq!(view["to"], "+1555***4567", "{view}");

    let check = operator
        .run(&["verify", "check", &id, &code, "--json"])
        .await;
    check.failed();
    assert_eq!(check.stdout(), "");
    assert!(
        check.stderr().contains("no longer pending"),
        "{}",
        check.stderr()
    );

    let unknown = operator
        .run(&["verify", "cancel", "00000000-0000-4000-8000-000000000000"])
        .await;
    unknown.failed();
    assert!(
        unknown.stderr().contains("no verification"),
        "{}",
        unknown.stderr()
    );
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_s_code_names_the_payment_and_approves_only_with_the_same_payment() {
    let operator = Operator::new().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[("To", "+15551234567"), ("From", FROM)])
                .field_where("Body", |body| {
                    body.contains("to pay 49.90 EUR to Acme Travel is: ")
                })
                .field_where("ValidityPeriod", |seconds| !seconds.is_empty()),
        )
        .respond_with(accepted("SMpay"))
        .expect(1)
        .mount(&operator.twilio)
        .await;
    let payment = [
        "--amount",
        "49.90",
        "--currency",
        "EUR",
        "--payee",
        "Acme Travel",
    ];

    let started = operator
        .run(&[&["verify", "start", "+15551234567", "--json"], &payment[..]].concat())
        .await;
    started.succeeded();
    let id = started.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(started.json()["payee"], "Acme Travel", "{}", started.json());
    let code = code_in(&operator.received_forms().await[0]["Body"]);

    let check_for = |payee: &'static str| {
        let (operator, id, code) = (&operator, id.clone(), code.clone());
        async move {
            operator
                .run(&[
                    "verify",
                    "check",
                    &id,
                    &code,
                    "--amount",
                    "49.9",
                    "--currency",
                    "EUR",
                    "--payee",
                    payee,
                ])
                .await
        }
    };

    // The right code for another payee is a wrong code: it approves nothing.
    let other_payee = check_for("Mallory").await;
    other_payee.failed();
    assert!(
        other_payee.stdout().contains("valid         false"),
        "{}",
        other_payee.stdout()
    );

    // The amount compares as a number: 49.9 is the 49.90 the code was sent for.
    let approved = check_for("Acme Travel").await;
    approved.succeeded();
    assert!(
        approved.stdout().contains("status        approved"),
        "{}",
        approved.stdout()
    );
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_given_in_part_or_malformed_is_a_usage_error_and_sends_nothing() {
    let operator = Operator::new().await;
    let partial = operator
        .run(&["verify", "start", "+15551234567", "--amount", "10"])
        .await;
    partial.exited_with(2);
    assert!(
        partial.stderr().contains("--currency"),
        "{}",
        partial.stderr()
    );

    let malformed = operator
        .run(&[
            "verify",
            "start",
            "+15551234567",
            "--amount",
            "ten",
            "--currency",
            "EUR",
            "--payee",
            "Acme",
        ])
        .await;
    malformed.exited_with(2);
    assert!(
        malformed
            .stderr()
            .contains("--amount: an amount is a decimal number"),
        "{}",
        malformed.stderr()
    );
    assert!(operator.received_forms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn report_conversion_counts_an_approved_code_as_the_api_does_before_and_after_a_fold() {
    let operator = Operator::new().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(code_sms())
        .respond_with(accepted("SMcode"))
        .mount(&operator.twilio)
        .await;
    let started = operator
        .run(&["verify", "start", "+15551234567", "--json"])
        .await;
    started.succeeded();
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let code = code_in(&operator.received_forms().await[0]["Body"]);
    operator
        .run(&["verify", "check", &id, &code])
        .await
        .succeeded();

    let table = operator
        .run(&["report", "conversion", "--group-by", "channel"])
        .await;
    table.succeeded();
    let stdout = table.stdout();
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .filter(|cell| !cell.is_empty())
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let mut lines = stdout.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        [
            "channel",
            "started",
            "codes sent",
            "approved",
            "conversion",
            "to approve p50/p95",
            "to deliver p50/p95",
            "cost per approved"
        ],
        "{stdout}"
    );
    assert_eq!(
        cells(lines.next().unwrap())[..5],
        ["sms", "1", "1", "1", "100.0%"],
        "{stdout}"
    );

    let report = |args: &'static [&'static str]| {
        let operator = &operator;
        async move {
            let run = operator.run(args).await;
            run.succeeded();
            run.json()
        }
    };
    let before = report(&["report", "conversion", "--group-by", "channel", "--json"]).await;
    assert_eq!(before["group_by"], "channel", "{before}");
    assert_eq!(before["groups"][0]["key"], "sms", "{before}");
    assert_eq!(before["groups"][0]["verifications_started"], 1, "{before}");
    assert_eq!(before["groups"][0]["approved"], 1, "{before}");
    assert_eq!(before["groups"][0]["conversion_rate"], 1.0, "{before}");

    // Folding every hour before the current one changes no figure.
    let fold = report(&["report", "fold", "--settle", "1m", "--json"]).await;
    assert!(fold["watermark"].is_string(), "{fold}");
    let after = report(&["report", "conversion", "--group-by", "channel", "--json"]).await;
    assert_eq!(after["groups"], before["groups"]);
}
