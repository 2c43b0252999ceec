//! `sms-notify check` and the CLI on a deployment without its provider's secrets.

use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::support::{Operator, ACCOUNT_PATH, ACCOUNT_SID, AUTH_TOKEN};

async fn twilio_answers_account(operator: &Operator, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(ACCOUNT_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(response)
        .expect(1)
        .mount(&operator.twilio)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_ok_for_each_part_of_a_working_setup() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ACCOUNT_SID, "friendly_name": "Smarter Firms", "status": "active"
        })),
    )
    .await;
    operator.run(&["migrate"]).await.succeeded();

    let run = operator.run(&["check"]).await;

    run.succeeded();
    let stdout = run.stdout();
    for line in [
        "OK    configuration every variable is valid",
        "OK    database      SQLite at data/sms-notify.sqlite, schema up to date",
        "OK    templates     shipping, two-factor-auth",
        "OK    provider      Twilio account AC0123456789abcdef0123456789abcdef (Smarter Firms) is active",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_what_to_fix_when_twilio_refuses_the_credentials() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401
        })),
    )
    .await;

    let run = operator.run(&["check"]).await;

    run.failed();
    let stdout = run.stdout();
    assert!(
        stdout.contains("FAIL  provider      twilio refused the credentials"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
        "{stdout}"
    );
    assert!(stdout.contains("OK    templates"), "{stdout}");
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_names_the_migrations_it_ran_then_says_up_to_date() {
    let operator = Operator::new().await;

    let first = operator.run(&["migrate"]).await;
    first.succeeded();
    assert!(
        first.stdout().contains("  0001 initial"),
        "{}",
        first.stdout()
    );

    let second = operator.run(&["migrate"]).await;
    second.succeeded();
    assert!(
        second.stdout().contains("up to date, no migration ran"),
        "{}",
        second.stdout()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn report_shows_a_row_per_day_with_what_was_sent() {
    let operator = Operator::new().await;
    operator
        .twilio_expects_sms("+15551234567", "Hello", "SM7")
        .await;
    operator
        .run(&["send", "--to", "+15551234567", "--body", "Hello"])
        .await
        .succeeded();

    let run = operator.run(&["report", "--since", "7d"]).await;

    run.succeeded();
    let stdout = run.stdout();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("day"), "{stdout}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    // One message, one segment, sent but not yet delivered: no delivery rate to speak of.
    assert_eq!(
        row,
        [today.as_str(), "1", "1", "0", "0", "-", "-"],
        "{stdout}"
    );
}

/// A deployment whose provider's secrets the operator's shell lacks: what sends refuses as the
/// service does; what only reads still works, and `check` says what to fix.
#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_without_a_provider_send_refuses_while_report_and_check_still_read() {
    let database = adapters_postgres::testing::TestDatabase::create().await;
    let operator = Operator::new().await;
    let run = |args: &'static [&'static str]| {
        operator.run_on_postgres_without_a_provider(&database.url, args)
    };

    let send = run(&["send", "--to", "+15551234567", "--body", "Hello"]).await;
    // A configuration error, not a negative answer.
    send.exited_with(2);
    let stderr = send.stderr();
    assert!(stderr.contains("TWILIO_ACCOUNT_SID"), "{stderr}");
    assert!(stderr.contains("SMS_PROVIDERS=console"), "{stderr}");

    run(&["report", "--since", "7d"]).await.succeeded();

    let check = run(&["check"]).await;
    check.failed();
    let stdout = check.stdout();
    assert!(
        stdout.contains("OK    database      PostgreSQL"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  provider      none"), "{stdout}");
}
