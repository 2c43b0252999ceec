//! How every kind of failure is classified: retryable, the account's, or permanent, keeping what
//! Twilio said.

use std::time::Duration;

use adapters_twilio::TwilioSmsProvider;
use ports::{ProviderError, ProviderErrorKind, SmsProvider};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

use crate::{config_for, default_post, error_json, provider_for, sms};

/// Sends "hi" to a server that answers `response` once, and returns the error.
async fn send_failing_with(response: ResponseTemplate) -> ProviderError {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    provider_for(&server)
        .send(&sms("hi"))
        .await
        .expect_err("the send should fail")
}

#[tokio::test]
async fn error_21211_is_permanent_and_keeps_code_and_message() {
    let error = send_failing_with(ResponseTemplate::new(400).set_body_json(error_json(
        400,
        21211,
        "The 'To' number +15551234567 is not a valid phone number.",
    )))
    .await;

    assert_eq!(
        error,
        ProviderError {
            provider: "twilio",
            kind: ProviderErrorKind::Permanent,
            http_status: Some(400),
            code: Some("21211".to_owned()),
            message: "The 'To' number +15551234567 is not a valid phone number.".to_owned(),
            more_info: Some("https://www.twilio.com/docs/errors/21211".to_owned()),
            retry_after: None,
            partly_sent: None,
        }
    );
}

macro_rules! code_is {
    ($name:ident, $status:expr, $code:expr, $kind:ident) => {
        #[tokio::test]
        async fn $name() {
            let error =
                send_failing_with(ResponseTemplate::new($status).set_body_json(error_json(
                    $status,
                    $code,
                    "twilio says no",
                )))
                .await;

            assert_eq!(error.kind, ProviderErrorKind::$kind);
            assert_eq!(error.http_status, Some($status));
            assert_eq!(error.code.as_deref(), Some(stringify!($code)));
            assert_eq!(error.message, "twilio says no");
        }
    };
}

macro_rules! permanent_code {
    ($name:ident, $status:expr, $code:expr) => {
        code_is!($name, $status, $code, Permanent);
    };
}

// Failover: the account's failures send the next messages to another provider; permanent ones
// are final there too.
code_is!(
    error_20003_authentication_failed_is_the_accounts,
    401,
    20003,
    Account
);
code_is!(
    error_20005_account_not_active_is_the_accounts,
    401,
    20005,
    Account
);
code_is!(
    error_21212_invalid_from_is_the_accounts,
    400,
    21212,
    Account
);
code_is!(
    error_21606_from_not_message_capable_is_the_accounts,
    400,
    21606,
    Account
);
permanent_code!(error_21211_invalid_to_is_permanent, 400, 21211);
permanent_code!(error_21408_region_not_enabled_is_permanent, 400, 21408);
permanent_code!(error_21610_opted_out_recipient_is_permanent, 400, 21610);
permanent_code!(error_21612_unreachable_route_is_permanent, 400, 21612);
permanent_code!(error_21614_not_a_mobile_number_is_permanent, 400, 21614);
permanent_code!(
    error_21608_unverified_number_on_trial_is_permanent,
    400,
    21608
);
// The listed codes are what they are whatever status they come with.
permanent_code!(error_21610_is_permanent_even_with_a_5xx_status, 503, 21610);

#[tokio::test]
async fn a_401_or_403_without_a_code_is_the_accounts() {
    for status in [401, 403] {
        let error = send_failing_with(ResponseTemplate::new(status)).await;
        assert_eq!(error.kind, ProviderErrorKind::Account, "HTTP {status}");
    }
}

#[tokio::test]
async fn any_other_4xx_is_permanent() {
    let error = send_failing_with(ResponseTemplate::new(404).set_body_json(error_json(
        404,
        20404,
        "not found",
    )))
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert_eq!(error.code.as_deref(), Some("20404"));
}

#[tokio::test]
async fn error_500_is_retryable() {
    let error = send_failing_with(ResponseTemplate::new(500).set_body_json(error_json(
        500,
        20500,
        "internal error",
    )))
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.http_status, Some(500));
    assert_eq!(error.code.as_deref(), Some("20500"));
    assert_eq!(error.message, "internal error");
}

#[tokio::test]
async fn error_503_is_retryable() {
    let error = send_failing_with(ResponseTemplate::new(503)).await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.http_status, Some(503));
    assert_eq!(error.code, None);
}

#[tokio::test]
async fn error_429_with_retry_after_is_retryable_with_retry_after() {
    let error = send_failing_with(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "7")
            .set_body_json(error_json(429, 20429, "Too Many Requests")),
    )
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.http_status, Some(429));
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn error_429_without_a_twilio_body_is_retryable() {
    let error = send_failing_with(ResponseTemplate::new(429)).await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.retry_after, None);
}

#[tokio::test]
async fn a_retry_after_date_is_ignored() {
    let error = send_failing_with(
        ResponseTemplate::new(429).insert_header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
    )
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.retry_after, None);
}

#[tokio::test]
async fn error_20429_is_retryable_whatever_the_status() {
    let error = send_failing_with(ResponseTemplate::new(400).set_body_json(error_json(
        400,
        20429,
        "Too Many Requests",
    )))
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.code.as_deref(), Some("20429"));
}

#[tokio::test]
async fn html_error_body_keeps_status() {
    let error = send_failing_with(
        ResponseTemplate::new(502)
            .set_body_raw("<html><body>Bad Gateway</body></html>", "text/html"),
    )
    .await;

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.http_status, Some(502));
    assert_eq!(error.code, None);
    assert_eq!(error.more_info, None);
    assert!(error.message.contains("502"), "{}", error.message);
}

#[tokio::test]
async fn empty_4xx_body_is_permanent_and_keeps_status() {
    let error = send_failing_with(ResponseTemplate::new(400)).await;

    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert_eq!(error.http_status, Some(400));
    assert_eq!(error.code, None);
}

#[tokio::test]
async fn a_string_error_code_is_read_like_a_number() {
    let error = send_failing_with(ResponseTemplate::new(400).set_body_json(
        json!({ "code": "21211", "message": "invalid", "more_info": null, "status": 400 }),
    ))
    .await;

    assert_eq!(error.code.as_deref(), Some("21211"));
    assert_eq!(error.more_info, None);
}

#[tokio::test]
async fn an_accepted_message_without_a_readable_sid_is_permanent_so_it_is_not_sent_twice() {
    let error = send_failing_with(ResponseTemplate::new(201).set_body_string("not json")).await;

    assert_eq!(error.kind, ProviderErrorKind::Permanent);
    assert_eq!(error.http_status, Some(201));
}

#[tokio::test]
async fn a_timeout_after_the_request_was_written_is_ambiguous() {
    let server = MockServer::start().await;
    default_post("hi")
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server);
    config.request_timeout = Duration::from_millis(200);

    let error = TwilioSmsProvider::new(config)
        .unwrap()
        .send(&sms("hi"))
        .await
        .unwrap_err();

    // Twilio may have accepted it: retried, but only after asking.
    assert_eq!(error.kind, ProviderErrorKind::Ambiguous);
    assert!(error.is_retryable());
    assert_eq!(error.http_status, None);
    assert!(
        error.message.contains("did not answer"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn connection_refused_is_retryable_and_surely_not_sent() {
    // A port that was free a moment ago and has nobody listening now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let server = MockServer::start().await;
    let mut config = config_for(&server);
    config.base_url = format!("http://{address}").parse().unwrap();

    let error = TwilioSmsProvider::new(config)
        .unwrap()
        .send(&sms("hi"))
        .await
        .unwrap_err();

    assert_eq!(error.kind, ProviderErrorKind::Retryable);
    assert_eq!(error.http_status, None);
    assert!(
        error.message.contains("could not connect"),
        "{}",
        error.message
    );
}
