//! `sms-notify send --csv`: a file sent row by row, its refusals and its summaries.

use wiremock_form::Form;

use crate::support::{Operator, FROM};

const TEMPLATE: &[&str] = &["send", "--csv", "orders.csv", "--template", "shipping"];

const FIXED: &str = "to,name,order
+15551230001,Ada,A-1
+15551230002,Bob,B-2
+15551230003,Cy,C-3
";

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_row_stops_the_whole_file_and_names_its_line() {
    let operator = Operator::new().await;
    operator.write(
        "orders.csv",
        "to,name,order
+15551230001,Ada,A-1
not-a-number,Bob,B-2
+15551230003,,C-3
",
    );

    let run = operator.run(TEMPLATE).await;

    run.exited_with(2);
    let stderr = run.stderr();
    assert!(stderr.contains("line 3: to:"), "{stderr}");
    assert!(
        stderr.contains("line 4: template `shipping` needs the variable `name`"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was sent: 2 bad rows"), "{stderr}");
    assert!(operator.received_forms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_file_sent_twice_sends_each_number_one_sms() {
    let operator = Operator::new().await;
    for (to, name, order) in [
        ("+15551230001", "Ada", "A-1"),
        ("+15551230002", "Bob", "B-2"),
        ("+15551230003", "Cy", "C-3"),
    ] {
        operator
            .twilio_expects_sms(
                to,
                &format!("Hi {name}, order {order} has shipped."),
                &format!("SM{order}"),
            )
            .await;
    }
    operator.write("orders.csv", FIXED);

    let first = operator.run(TEMPLATE).await;
    first.succeeded();
    assert!(
        first.stdout().contains("3 messages queued now"),
        "{}",
        first.stdout()
    );
    assert!(first.stdout().contains("3 sent"), "{}", first.stdout());

    let second = operator.run(TEMPLATE).await;
    second.succeeded();
    assert!(
        second
            .stdout()
            .contains("0 messages queued now, 3 already queued or sent by an earlier run"),
        "{}",
        second.stdout()
    );
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_row_is_a_new_message_and_the_others_are_not_sent_again() {
    let operator = Operator::new().await;
    for (index, (to, body)) in [
        ("+15551230001", "Hi Ada, order A-1 has shipped."),
        ("+15551230002", "Hi Bob, order B-2 has shipped."),
        ("+15551230003", "Hi Cy, order C-3 has shipped."),
        ("+15551230002", "Hi Bob, order B-9 has shipped."),
    ]
    .into_iter()
    .enumerate()
    {
        operator
            .twilio_expects_sms(to, body, &format!("SM{index}"))
            .await;
    }
    operator.write("orders.csv", FIXED);
    operator.run(TEMPLATE).await.succeeded();

    operator.write("orders.csv", &FIXED.replace("B-2", "B-9"));
    let run = operator.run(TEMPLATE).await;

    run.succeeded();
    assert!(
        run.stdout().contains("1 message queued now"),
        "{}",
        run.stdout()
    );
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_twilio_refuses_is_reported_with_its_line() {
    use wiremock::matchers::{basic_auth, method, path};
    use wiremock::{Mock, ResponseTemplate};

    let operator = Operator::new().await;
    operator
        .twilio_expects_sms("+15551230001", "Hi Ada, order A-1 has shipped.", "SM1")
        .await;
    Mock::given(method("POST"))
        .and(path(crate::support::MESSAGES_PATH))
        .and(basic_auth(
            crate::support::ACCOUNT_SID,
            crate::support::AUTH_TOKEN,
        ))
        .and(Form::exactly(&[
            ("To", "+15551230002"),
            ("From", FROM),
            ("Body", "Hi Bob, order B-2 has shipped."),
        ]))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "code": 21610, "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400
        })))
        .expect(1)
        .mount(&operator.twilio)
        .await;
    operator.write(
        "orders.csv",
        "to,name,order\n+15551230001,Ada,A-1\n+15551230002,Bob,B-2\n",
    );

    let run = operator.run(TEMPLATE).await;

    run.failed();
    let stdout = run.stdout();
    assert!(stdout.contains("1 failed, 1 sent"), "{stdout}");
    assert!(
        stdout.contains("line 3: +1555***0002 failed      21610: "),
        "{stdout}"
    );
    operator.twilio.verify().await;
}

/// Each refusal of a file's shape: exit 2, the reason on stderr, nothing sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_the_wrong_shape_is_refused_whole_and_says_why() {
    let operator = Operator::new().await;
    for (contents, reason) in [
        (
            "to,name,order\n+15551230001,Ada\n",
            "line 2: 2 values, but the first line names 3 columns",
        ),
        (
            "to,name,order\n+15551230001,Ada,A-1,extra\n",
            "line 2: 4 values, but the first line names 3 columns",
        ),
        ("to,name,order\n", "no rows to send after the first line"),
        (
            "to,nmae,order\n+15551230001,Ada,A-1\n",
            "column `nmae`: template `shipping` has no such variable; the columns are `to` and its variables: name, order",
        ),
    ] {
        operator.write("orders.csv", contents);

        let run = operator.run(TEMPLATE).await;

        run.exited_with(2);
        assert!(run.stderr().contains(reason), "{contents}: {}", run.stderr());
    }
    assert!(operator.received_forms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_row_is_counted_in_the_singular_and_json_summarises_the_file() {
    let operator = Operator::new().await;
    operator
        .twilio_expects_sms("+15551230001", "Hi Ada, order A-1 has shipped.", "SM1")
        .await;
    operator.write("orders.csv", "to,name,order\n+15551230001,Ada,A-1\n");

    let first = operator.run(TEMPLATE).await;
    first.succeeded();
    assert!(
        first
            .stdout()
            .contains("1 row: 1 message queued now, 0 already queued or sent by an earlier run"),
        "{}",
        first.stdout()
    );

    let mut args = TEMPLATE.to_vec();
    args.push("--json");
    let again = operator.run(&args).await;
    again.succeeded();
    let summary = again.json();
    assert_eq!(summary["rows"], 1, "{summary}");
    assert_eq!(summary["earlier"], 1, "{summary}");
    assert_eq!(summary["statuses"]["sent"], 1, "{summary}");
    operator.twilio.verify().await;
}
