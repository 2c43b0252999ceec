//! Integration tests of the Twilio adapter: requests against a wiremock server standing in for
//! Twilio, and the status-callback helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account;
mod calls;
mod config;
mod errors;
mod logging;
mod openapi;
mod send;
mod sent_search;
mod signature;
mod status_callback;
mod status_lookup;
mod whatsapp;

use std::time::Duration;

use adapters_twilio::{TwilioConfig, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use domain::{Channel, MessageId, PhoneNumber};
use ports::OutboundMessage;
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{MockBuilder, MockServer};
use wiremock_form::Form;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "auth-token-never-logged";
pub const FROM: &str = "+15005550006";
pub const TO: &str = "+15551234567";
pub const MESSAGE_SID: &str = "SM0123456789abcdef0123456789abcdef";
pub const USER_AGENT: &str = concat!("sms-notify/", env!("CARGO_PKG_VERSION"));

/// A configuration that sends from [`FROM`] with the auth token, to `server`.
pub fn config_for(server: &MockServer) -> TwilioConfig {
    TwilioConfig {
        base_url: server.uri().parse().unwrap(),
        account_sid: ACCOUNT_SID.to_owned(),
        credentials: TwilioCredentials::AuthToken(SecretString::from(AUTH_TOKEN)),
        sender: TwilioSender::From(PhoneNumber::parse(FROM).unwrap()),
        voice_from: None,
        whatsapp_from: None,
        status_callback_url: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    }
}

pub fn provider_for(server: &MockServer) -> TwilioSmsProvider {
    TwilioSmsProvider::new(config_for(server)).unwrap()
}

pub fn sms(body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::generate(),
        to: PhoneNumber::parse(TO).unwrap(),
        channel: Channel::Sms,
        body: body.to_owned(),
        locale: None,
        content_sid: None,
        validity: None,
        sensitive: false,
    }
}

pub fn messages_path(account_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
}

/// The form body holds exactly these pairs, in any order: a missing or extra field fails.
pub fn form_is(pairs: &[(&str, &str)]) -> Form {
    Form::exactly(pairs)
}

/// A POST to the account's Messages resource with the account's Basic auth, our User-Agent and
/// exactly the form `form`.
pub fn twilio_post(account_sid: &str, user: &str, password: &str, form: Form) -> MockBuilder {
    wiremock::Mock::given(method("POST"))
        .and(path(messages_path(account_sid)))
        .and(basic_auth(user, password))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(header("user-agent", USER_AGENT))
        .and(form)
}

/// The plain SMS from [`FROM`] to [`TO`] with the auth token.
pub fn default_post(body: &str) -> MockBuilder {
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[("To", TO), ("From", FROM), ("Body", body)]),
    )
}

/// A `201 Created` body as Twilio sends it right after accepting a message: strings for
/// numbers, nulls for what is not known yet, and fields we do not read.
pub fn created_json() -> serde_json::Value {
    json!({
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": "Your code is 123456",
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
        "date_sent": null,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": FROM,
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": "2",
        "price": "-0.01580",
        "price_unit": "USD",
        "sid": MESSAGE_SID,
        "status": "queued",
        "subresource_uris": { "media": "/2010-04-01/Accounts/AC/Messages/SM/Media.json" },
        "to": TO,
        "uri": "/2010-04-01/Accounts/AC/Messages/SM.json",
        "some_future_field": { "nested": [1, 2, 3] }
    })
}

/// Twilio's error body.
pub fn error_json(status: u16, code: u32, message: &str) -> serde_json::Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status
    })
}
