//! WhatsApp codes with an approved template (`ContentSid` and `ContentVariables`, never a
//! `Body`), WhatsApp's own sender, and WhatsApp's refusals, which are final for the channel.

use adapters_twilio::TwilioSmsProvider;
use domain::{Channel, PhoneNumber};
use ports::{ProviderErrorKind, SentMessageSearch, SmsProvider};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    config_for, created_json, error_json, form_is, messages_path, sms, twilio_post, ACCOUNT_SID,
    AUTH_TOKEN, FROM, MESSAGE_SID, TO,
};

const WHATSAPP_FROM: &str = "+15005550010";
const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";
const VARIABLES: &str = r#"{"1":"402913"}"#;

fn whatsapp_code() -> ports::OutboundMessage {
    let mut message = sms(VARIABLES);
    message.channel = Channel::Whatsapp;
    message.content_sid = Some(CONTENT_SID.to_owned());
    message.locale = Some("en".to_owned());
    message.sensitive = true;
    message
}

fn whatsapp_provider(server: &MockServer) -> TwilioSmsProvider {
    let mut config = config_for(server);
    config.whatsapp_from = Some(PhoneNumber::parse(WHATSAPP_FROM).unwrap());
    TwilioSmsProvider::new(config).unwrap()
}

#[tokio::test]
async fn a_whatsapp_code_goes_as_its_template_with_the_code_as_its_variable() {
    let server = MockServer::start().await;
    let to = format!("whatsapp:{TO}");
    let from = format!("whatsapp:{WHATSAPP_FROM}");
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[
            ("To", &to),
            ("From", &from),
            ("ContentSid", CONTENT_SID),
            ("ContentVariables", VARIABLES),
        ]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;

    let receipt = whatsapp_provider(&server)
        .send(&whatsapp_code())
        .await
        .unwrap();

    assert_eq!(receipt.provider_sid, MESSAGE_SID);
}

#[tokio::test]
async fn free_text_whatsapp_goes_from_the_whatsapp_sender_and_sms_from_the_number() {
    let server = MockServer::start().await;
    let to = format!("whatsapp:{TO}");
    let from = format!("whatsapp:{WHATSAPP_FROM}");
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[("To", &to), ("From", &from), ("Body", "thanks, see you")]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    twilio_post(
        ACCOUNT_SID,
        ACCOUNT_SID,
        AUTH_TOKEN,
        form_is(&[("To", TO), ("From", FROM), ("Body", "an sms")]),
    )
    .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
    .expect(1)
    .mount(&server)
    .await;
    let provider = whatsapp_provider(&server);
    let mut reply = sms("thanks, see you");
    reply.channel = Channel::Whatsapp;

    provider.send(&reply).await.unwrap();
    provider.send(&sms("an sms")).await.unwrap();
}

/// 63016 (outside the 24-hour window without a template) and its kin fail the message at once,
/// so that a later channel can take over; 63018 (WhatsApp's rate limit) is throttling.
#[tokio::test]
async fn whatsapps_refusals_are_final_and_its_rate_limit_passes() {
    for (status, code, kind) in [
        (400, 63016, ProviderErrorKind::Permanent),
        (400, 63003, ProviderErrorKind::Permanent),
        (400, 63007, ProviderErrorKind::Permanent),
        (400, 63024, ProviderErrorKind::Permanent),
        (400, 63032, ProviderErrorKind::Permanent),
        (500, 63027, ProviderErrorKind::Permanent),
        (400, 63018, ProviderErrorKind::Retryable),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path(ACCOUNT_SID)))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(error_json(status, code, "refused")),
            )
            .expect(1)
            .mount(&server)
            .await;

        let error = whatsapp_provider(&server)
            .send(&whatsapp_code())
            .await
            .unwrap_err();

        assert_eq!(error.kind, kind, "{code}");
        assert_eq!(error.code.as_deref(), Some(code.to_string().as_str()));
    }
}

#[tokio::test]
async fn an_unanswered_template_is_not_searched_for_by_its_variables() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messages": []})))
        .expect(0)
        .mount(&server)
        .await;

    let found = whatsapp_provider(&server)
        .find_sent(&whatsapp_code(), chrono::Utc::now(), chrono::Utc::now())
        .await;

    assert_eq!(found, Ok(None));
}
