//! `check_credentials`: one `GET` of the account says whether the credentials work.

use adapters_twilio::{CredentialsError, TwilioAccount, TwilioCredentials, TwilioSmsProvider};
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::{config_for, error_json, provider_for, ACCOUNT_SID, AUTH_TOKEN, USER_AGENT};

fn account_get(user: &str, password: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")))
        .and(basic_auth(user, password))
        .and(header("user-agent", USER_AGENT))
}

/// The account resource as Twilio sends it, auth token included.
fn account_json(status: &str) -> serde_json::Value {
    json!({
        "auth_token": "the-accounts-own-token",
        "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
        "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000",
        "friendly_name": "Smarter Firms production",
        "owner_account_sid": ACCOUNT_SID,
        "sid": ACCOUNT_SID,
        "status": status,
        "subresource_uris": { "calls": "/2010-04-01/Accounts/AC/Calls.json" },
        "type": "Full",
        "uri": "/2010-04-01/Accounts/AC.json"
    })
}

async fn check_answered(response: ResponseTemplate) -> Result<TwilioAccount, CredentialsError> {
    let server = MockServer::start().await;
    account_get(ACCOUNT_SID, AUTH_TOKEN)
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    provider_for(&server).check_credentials().await
}

#[tokio::test]
async fn working_credentials_name_the_account() {
    let account = check_answered(ResponseTemplate::new(200).set_body_json(account_json("active")))
        .await
        .unwrap();

    assert_eq!(
        account,
        TwilioAccount {
            sid: ACCOUNT_SID.to_owned(),
            friendly_name: Some("Smarter Firms production".to_owned()),
        }
    );
}

#[tokio::test]
async fn an_api_key_is_checked_against_the_account_in_the_path() {
    let server = MockServer::start().await;
    let key_sid = "SK0123456789abcdef0123456789abcdef";
    account_get(key_sid, "api-key-secret")
        .respond_with(ResponseTemplate::new(200).set_body_json(account_json("active")))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server);
    config.credentials = TwilioCredentials::ApiKey {
        sid: key_sid.to_owned(),
        secret: SecretString::from("api-key-secret"),
    };

    let result = TwilioSmsProvider::new(config)
        .unwrap()
        .check_credentials()
        .await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_wrong_auth_token_is_rejected_with_twilios_code() {
    let error = check_answered(ResponseTemplate::new(401).set_body_json(error_json(
        401,
        20003,
        "Authenticate",
    )))
    .await
    .unwrap_err();

    let CredentialsError::Rejected(error) = &error else {
        panic!("expected Rejected, got {error:?}");
    };
    assert_eq!(error.http_status, Some(401));
    assert_eq!(error.code.as_deref(), Some("20003"));
    assert_eq!(
        error.more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/20003")
    );
}

#[tokio::test]
async fn an_unknown_account_is_rejected() {
    let error = check_answered(ResponseTemplate::new(404).set_body_json(error_json(
        404,
        20404,
        "The requested resource was not found",
    )))
    .await
    .unwrap_err();

    assert!(matches!(error, CredentialsError::Rejected(_)), "{error:?}");
}

#[tokio::test]
async fn a_suspended_account_is_reported_as_not_active() {
    let error = check_answered(ResponseTemplate::new(200).set_body_json(account_json("suspended")))
        .await
        .unwrap_err();

    assert_eq!(
        error,
        CredentialsError::AccountNotActive("suspended".into())
    );
    assert_eq!(
        error.to_string(),
        "the twilio account is suspended, not active"
    );
}

#[tokio::test]
async fn twilio_failing_is_unavailable_not_rejected() {
    let error = check_answered(ResponseTemplate::new(503))
        .await
        .unwrap_err();

    let CredentialsError::Unavailable(error) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert_eq!(error.http_status, Some(503));
}

#[tokio::test]
async fn an_unreadable_account_is_unavailable() {
    let error = check_answered(
        ResponseTemplate::new(200).set_body_raw("<html>proxy login</html>", "text/html"),
    )
    .await
    .unwrap_err();

    assert!(
        matches!(error, CredentialsError::Unavailable(_)),
        "{error:?}"
    );
}
