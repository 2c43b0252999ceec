//! What `TwilioSmsProvider::new` refuses.

use adapters_twilio::{TwilioConfigError, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use secrecy::SecretString;
use wiremock::MockServer;

use crate::config_for;

#[tokio::test]
async fn a_messaging_service_sid_not_starting_with_mg_is_refused() {
    let server = MockServer::start().await;
    let mut config = config_for(&server);
    config.sender = TwilioSender::MessagingService("PN0123456789abcdef0123456789abcdef".into());

    let error = TwilioSmsProvider::new(config).unwrap_err();

    assert!(matches!(
        error,
        TwilioConfigError::InvalidMessagingServiceSid
    ));
}

#[tokio::test]
async fn an_account_sid_not_starting_with_ac_is_refused() {
    let server = MockServer::start().await;
    for account_sid in ["", "AC", "SK0123456789abcdef", "AC0123/../x"] {
        let mut config = config_for(&server);
        config.account_sid = account_sid.to_owned();

        let error = TwilioSmsProvider::new(config).unwrap_err();

        assert!(
            matches!(error, TwilioConfigError::InvalidAccountSid),
            "{account_sid}"
        );
    }
}

#[tokio::test]
async fn an_empty_api_key_sid_is_refused() {
    let server = MockServer::start().await;
    let mut config = config_for(&server);
    config.credentials = TwilioCredentials::ApiKey {
        sid: String::new(),
        secret: SecretString::from("secret"),
    };

    let error = TwilioSmsProvider::new(config).unwrap_err();

    assert!(matches!(error, TwilioConfigError::InvalidApiKeySid));
}

#[tokio::test]
async fn a_base_url_that_is_not_http_is_refused() {
    let server = MockServer::start().await;
    for base_url in ["mailto:ops@example.com", "ftp://api.twilio.com"] {
        let mut config = config_for(&server);
        config.base_url = base_url.parse().unwrap();

        let error = TwilioSmsProvider::new(config).unwrap_err();

        assert!(
            matches!(error, TwilioConfigError::InvalidBaseUrl(_)),
            "{base_url}"
        );
    }
}

#[test]
fn the_default_base_url_is_twilios_api() {
    let url: url::Url = adapters_twilio::TwilioConfig::DEFAULT_BASE_URL
        .parse()
        .unwrap();
    assert_eq!(url.as_str(), "https://api.twilio.com/");
}
