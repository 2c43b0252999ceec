//! The [`SmsProvider`] port on Twilio: sending is `provider`'s, readiness `account`'s
//! credentials check, so that neither of the two needs the other's half.

use async_trait::async_trait;
use domain::Channel;
use ports::{OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt, SmsProvider};

use crate::account::CredentialsError;
use crate::provider::{TwilioSmsProvider, NAME};

#[async_trait]
impl SmsProvider for TwilioSmsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Texts always; calls once `TWILIO_VOICE_FROM` gives a number to call from.
    fn can_send(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms | Channel::Whatsapp => true,
            Channel::Voice => self.places_calls(),
        }
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        self.send_message(message).await
    }

    /// Ready when Twilio accepts the credentials and the account is active.
    async fn check_ready(&self) -> Result<(), ProviderError> {
        match self.check_credentials().await {
            Ok(_) => Ok(()),
            Err(CredentialsError::Rejected(error) | CredentialsError::Unavailable(error)) => {
                Err(error)
            }
            Err(error @ CredentialsError::AccountNotActive(_)) => Err(ProviderError {
                provider: NAME,
                kind: ProviderErrorKind::Account,
                http_status: None,
                code: None,
                message: error.to_string(),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            }),
        }
    }
}
