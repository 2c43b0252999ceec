//! The provider of a run with no Twilio credentials: it "delivers" each SMS by printing it to
//! the log, so that the whole flow can be tried on a laptop. This is the one place a message
//! body, codes included, is ever logged, and the log line says why. A call is printed as the
//! text it would speak, a WhatsApp template as its SID and variables.

use async_trait::async_trait;
use domain::Channel;
use ports::{OutboundMessage, ProviderError, ProviderReceipt, SmsProvider};

pub struct ConsoleSmsProvider;

#[async_trait]
impl SmsProvider for ConsoleSmsProvider {
    fn name(&self) -> &'static str {
        "console"
    }

    /// Every channel: printing a call's text stands in for the call as printing an SMS does.
    fn can_send(&self, _channel: Channel) -> bool {
        true
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        tracing::info!(
            message_id = %message.message_id,
            to = %message.to.masked(),
            channel = %message.channel,
            body = %message.body,
            locale = message.locale.as_deref(),
            content_sid = message.content_sid.as_deref(),
            "console provider: SMS printed here instead of sent (no Twilio credentials configured)"
        );
        Ok(ProviderReceipt {
            provider: "console",
            provider_sid: format!("console-{}", message.message_id),
            segments: Some(template::analyze(&message.body).segments),
            price: None,
        })
    }
}
