//! `sms-notify check` and the CLI on a deployment without its provider's secrets.

use wiremock::matchers::{basic_auth, body_string, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Operator, ACCOUNT_PATH, ACCOUNT_SID, AUTH_TOKEN};

/// One row of `check`'s table.
#[derive(Debug)]
struct Row {
    status: String,
    part: String,
    finding: String,
    fix: Option<String>,
}

/// The rows of `check`'s table, read the way an operator reads it: a header, then a row per
/// part (status, part, finding, in columns at least two spaces apart), each fix on the line
/// below its row.
fn rows(stdout: &str) -> Vec<Row> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = columns(lines.next().unwrap_or_default());
    assert_eq!(header, ["status", "part", "finding"], "{stdout}");
    let mut rows: Vec<Row> = Vec::new();
    for line in lines {
        if let Some(fix) = line.trim_start().strip_prefix("fix: ") {
            let row = rows.last_mut().expect("a fix below a row");
            assert!(row.fix.is_none(), "two fixes for one row:\n{stdout}");
            row.fix = Some(fix.to_owned());
            continue;
        }
        match columns(line).as_slice() {
            [status, part, finding] => rows.push(Row {
                status: (*status).to_owned(),
                part: (*part).to_owned(),
                finding: (*finding).to_owned(),
                fix: None,
            }),
            // The closing line: `ready`, or how many parts to fix.
            [_] => {}
            other => panic!("not a row of the table: {other:?}\n{stdout}"),
        }
    }
    rows
}

fn columns(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|column| !column.is_empty())
        .collect()
}

impl Row {
    /// The fix under the row; empty when there is none, which no expected fix matches.
    fn fix_text(&self) -> &str {
        self.fix.as_deref().unwrap_or_default()
    }
}

#[track_caller]
fn row<'a>(rows: &'a [Row], part: &str) -> &'a Row {
    rows.iter()
        .find(|row| row.part == part)
        .unwrap_or_else(|| panic!("no row `{part}` in {rows:#?}"))
}

/// Every warning and failure says how to fix it; nothing else has a fix.
#[track_caller]
fn assert_every_problem_has_a_fix(rows: &[Row]) {
    for row in rows {
        assert_eq!(
            row.fix.is_some(),
            matches!(row.status.as_str(), "WARN" | "FAIL"),
            "{row:?}"
        );
    }
}

/// The schema this binary expects, as `--version` names it.
fn schema_version(operator_version: &str) -> String {
    operator_version
        .split("database schema ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no schema in `{operator_version}`"))
        .to_owned()
}

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
    let rows = rows(&stdout);
    let version = operator.run(&["--version"]).await.stdout();
    let schema = schema_version(&version);
    for (part, finding) in [
        ("configuration", "every variable is valid".to_owned()),
        (
            "database",
            "SQLite at data/sms-notify.sqlite, reachable".to_owned(),
        ),
        ("migrations", format!("schema {schema}, up to date")),
        (
            "templates",
            "shipping, two-factor-auth (32 locales), two-factor-auth-transaction (32 locales), two-factor-auth-transaction-voice (32 locales), two-factor-auth-voice (32 locales)".to_owned(),
        ),
        (
            "provider twilio",
            "Twilio account AC0123456789abcdef0123456789abcdef (Smarter Firms) is active"
                .to_owned(),
        ),
        (
            "webhooks",
            "none: without PUBLIC_BASE_URL Twilio is not asked for status callbacks".to_owned(),
        ),
    ] {
        let row = row(&rows, part);
        assert_eq!(
            (row.status.as_str(), &row.finding),
            ("OK", &finding),
            "{stdout}"
        );
    }
    // Without PUBLIC_BASE_URL Twilio reports no deliveries: worth a warning, not a failure.
    let public_url = row(&rows, "public URL");
    assert_eq!(public_url.status, "WARN", "{stdout}");
    assert!(public_url.fix_text().contains("set PUBLIC_BASE_URL"));
    assert_every_problem_has_a_fix(&rows);
    assert_eq!(stdout.lines().last(), Some("ready"), "{stdout}");
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
    let rows = rows(&stdout);
    let provider = row(&rows, "provider twilio");
    assert_eq!(provider.status, "FAIL", "{stdout}");
    assert!(
        provider
            .finding
            .starts_with("twilio refused the credentials"),
        "{stdout}"
    );
    assert!(
        provider
            .fix_text()
            .starts_with("check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
        "{stdout}"
    );
    assert_eq!(row(&rows, "templates").status, "OK", "{stdout}");
    assert_every_problem_has_a_fix(&rows);
    assert_eq!(stdout.lines().last(), Some("1 to fix"), "{stdout}");
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
    let rows = rows(&stdout);
    let database = row(&rows, "database");
    assert_eq!(database.status, "OK", "{stdout}");
    assert!(database.finding.starts_with("PostgreSQL"), "{stdout}");
    let provider = row(&rows, "provider none");
    assert_eq!(provider.status, "FAIL", "{stdout}");
    assert!(provider.finding.starts_with("none"), "{stdout}");
    assert!(
        provider.fix_text().contains("SMS_PROVIDERS=console"),
        "{stdout}"
    );
    assert_every_problem_has_a_fix(&rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_the_migrations_a_database_lacks_and_the_schema_they_reach() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ACCOUNT_SID, "status": "active"
        })),
    )
    .await;
    // An empty database file: every migration is still to run.
    std::fs::create_dir(operator.dir.path().join("data")).unwrap();
    operator.write("data/sms-notify.sqlite", "");
    let schema = schema_version(&operator.run(&["--version"]).await.stdout());

    let run = operator.run(&["check"]).await;

    // Pending migrations run at the next start: a warning, not a failure.
    run.succeeded();
    let stdout = run.stdout();
    let rows = rows(&stdout);
    let migrations = row(&rows, "migrations");
    assert_eq!(migrations.status, "WARN", "{stdout}");
    assert!(
        migrations
            .finding
            .contains(&format!("to run to reach schema {schema}: 0001 initial, ")),
        "{stdout}"
    );
    // The schema --version names is the number of the last migration.
    assert!(
        migrations.finding.contains(&format!(", {schema:0>4} ")),
        "{stdout}"
    );
    assert!(
        migrations
            .fix_text()
            .starts_with("run `sms-notify migrate`"),
        "{stdout}"
    );
}

/// Before the first deployment nothing answers at PUBLIC_BASE_URL: a warning with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn check_warns_when_nothing_answers_at_the_status_callback_url() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ACCOUNT_SID, "status": "active"
        })),
    )
    .await;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let run = operator
        .run_with(
            &[("PUBLIC_BASE_URL", &format!("http://{closed}"))],
            &["check"],
        )
        .await;

    run.succeeded();
    let stdout = run.stdout();
    let rows = rows(&stdout);
    let webhooks = row(&rows, "webhooks");
    assert_eq!(webhooks.status, "WARN", "{stdout}");
    assert!(webhooks.finding.contains("no answer"), "{stdout}");
    assert!(
        webhooks.fix_text().starts_with(&format!(
            "route http://{closed}/v1/webhooks/twilio/status to the service's"
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_with_a_wrong_variable_names_it_and_still_checks_the_database() {
    let operator = Operator::new().await;

    let run = operator
        .run_with(&[("VERIFY_MAX_CHECKS", "many")], &["check"])
        .await;

    run.failed();
    let stdout = run.stdout();
    let rows = rows(&stdout);
    let configuration = row(&rows, "configuration");
    assert_eq!(configuration.status, "FAIL", "{stdout}");
    assert!(
        configuration.finding.starts_with("VERIFY_MAX_CHECKS"),
        "{stdout}"
    );
    assert!(
        configuration
            .fix_text()
            .starts_with("correct VERIFY_MAX_CHECKS"),
        "{stdout}"
    );
    assert_eq!(row(&rows, "database").status, "OK", "{stdout}");
    assert_eq!(row(&rows, "templates").status, "-", "{stdout}");
    assert_every_problem_has_a_fix(&rows);
}

/// Twilio's status callbacks reach a service that refuses unsigned posts as sms-notify does;
/// a loopback PUBLIC_BASE_URL is still warned about, as Twilio cannot reach it.
#[tokio::test(flavor = "multi_thread")]
async fn check_finds_the_status_callback_endpoint_answering_as_sms_notify() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ACCOUNT_SID, "status": "active"
        })),
    )
    .await;
    let public = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms/v1/webhooks/twilio/status"))
        .and(body_string(""))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            r#"{"type":"https://sms-notify.dev/problems/invalid-signature","status":403}"#,
            "application/problem+json",
        ))
        .expect(1)
        .mount(&public)
        .await;
    let base = format!("{}/sms", public.uri());

    let run = operator
        .run_with(&[("PUBLIC_BASE_URL", &base)], &["check"])
        .await;

    run.succeeded();
    let stdout = run.stdout();
    let rows = rows(&stdout);
    let webhooks = row(&rows, "webhooks");
    assert_eq!(webhooks.status, "OK", "{stdout}");
    assert!(
        webhooks
            .finding
            .contains("/sms/v1/webhooks/twilio/status: answered by sms-notify"),
        "{stdout}"
    );
    let public_url = row(&rows, "public URL");
    assert_eq!(public_url.status, "WARN", "{stdout}");
    assert!(
        public_url
            .finding
            .contains("cannot be reached from the internet"),
        "{stdout}"
    );
    assert_every_problem_has_a_fix(&rows);
    public.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_fails_when_the_status_callback_url_reaches_something_else() {
    let operator = Operator::new().await;
    twilio_answers_account(
        &operator,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ACCOUNT_SID, "status": "active"
        })),
    )
    .await;
    // A proxy that does not forward the webhook: it answers 404 to everything.
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header_exists("content-type"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&elsewhere)
        .await;

    let run = operator
        .run_with(&[("PUBLIC_BASE_URL", &elsewhere.uri())], &["check"])
        .await;

    run.failed();
    let stdout = run.stdout();
    let rows = rows(&stdout);
    let webhooks = row(&rows, "webhooks");
    assert_eq!(webhooks.status, "FAIL", "{stdout}");
    assert!(
        webhooks.finding.contains("answered 404 Not Found"),
        "{stdout}"
    );
    assert!(
        webhooks
            .fix_text()
            .contains("to the service's /v1/webhooks/twilio/status"),
        "{stdout}"
    );
    elsewhere.verify().await;
}
