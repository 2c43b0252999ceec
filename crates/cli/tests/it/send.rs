//! `send`, one message: the template rendered, the message followed until Twilio's answer,
//! and what is refused before anything is stored.

use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};

use wiremock_form::Form;

use crate::support::{Operator, ACCOUNT_SID, AUTH_TOKEN, FROM, MESSAGES_PATH};

#[tokio::test(flavor = "multi_thread")]
async fn send_renders_the_template_and_follows_the_message_until_sent() {
    let operator = Operator::new().await;
    operator
        .twilio_expects_sms("+15551234567", "Hi Ada, order A-1 has shipped.", "SM42")
        .await;

    let run = operator
        .run(&[
            "send",
            "--to",
            "+15551234567",
            "--template",
            "shipping",
            "--data",
            "name=Ada",
            "--data",
            "order=A-1",
        ])
        .await;

    run.succeeded();
    let stdout = run.stdout();
    assert!(stdout.contains("to +1555***4567"), "{stdout}");
    assert!(stdout.contains("sent        provider_sid=SM42"), "{stdout}");
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_twilio_refuses_fails_the_command_with_twilios_reason() {
    let operator = Operator::new().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(Form::exactly(&[
            ("To", "+15551234567"),
            ("From", FROM),
            ("Body", "Hello"),
        ]))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .expect(1)
        .mount(&operator.twilio)
        .await;

    let run = operator
        .run(&["send", "--to", "+15551234567", "--body", "Hello"])
        .await;

    run.failed();
    assert!(
        run.stdout()
            .contains("failed      21211: The 'To' number is not a valid phone number."),
        "{}",
        run.stdout()
    );
    operator.twilio.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_number_is_refused_before_anything_is_stored() {
    let operator = Operator::new().await;

    let run = operator
        .run(&["send", "--to", "12", "--body", "Hello"])
        .await;

    assert_eq!(run.0.status.code(), Some(2), "{}", run.stderr());
    assert!(run.stderr().contains("--to"), "{}", run.stderr());
    assert!(!operator.database().join("data").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn help_explains_the_csv_format_and_why_a_second_run_sends_nothing() {
    let operator = Operator::new().await;

    let run = operator.run(&["send", "--help"]).await;

    run.succeeded();
    // As one line, wherever the terminal's width wraps it.
    let help = run
        .stdout()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(help.contains("--csv <FILE>"), "{help}");
    assert!(
        help.contains("a column the template does not read is refused"),
        "{help}"
    );
    assert!(
        help.contains("Running the same file again sends nothing twice"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_key_the_template_does_not_read_is_refused() {
    let operator = Operator::new().await;

    let run = operator
        .run(&[
            "send",
            "--to",
            "+15551234567",
            "--template",
            "shipping",
            "--data",
            "nmae=Ada",
            "--data",
            "order=A-1",
        ])
        .await;

    run.exited_with(2);
    assert!(
        run.stderr().contains(
            "--data nmae: template `shipping` has no variable `nmae`; its variables: name, order"
        ),
        "{}",
        run.stderr()
    );
    assert!(operator.received_forms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn send_without_a_template_names_body_as_the_other_way() {
    let operator = Operator::new().await;

    let run = operator.run(&["send", "--to", "+15551234567"]).await;

    run.exited_with(2);
    assert!(run.stderr().contains("--body <TEXT>"), "{}", run.stderr());
}
