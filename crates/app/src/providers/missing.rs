//! The provider of a deployment that names none ([`crate::wiring::config::ProviderConfig::Missing`]):
//! the operator's commands that send nothing read such a configuration, and still get the whole
//! application wired. Nothing is ever sent through it; should a send reach it, it fails, so
//! that no message is marked `sent` that was not, and readiness says what is missing.

use async_trait::async_trait;
use ports::{OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt, SmsProvider};

pub struct MissingSmsProvider;

impl MissingSmsProvider {
    fn refusal() -> ProviderError {
        ProviderError {
            provider: "none",
            kind: ProviderErrorKind::Account,
            http_status: None,
            code: None,
            message: "no SMS provider is configured (TWILIO_ACCOUNT_SID, VONAGE_API_KEY or SMS_PROVIDERS=console)"
                .to_owned(),
            more_info: None,
            retry_after: None,
            partly_sent: None,
        }
    }
}

#[async_trait]
impl SmsProvider for MissingSmsProvider {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn send(&self, _message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        Err(Self::refusal())
    }

    async fn check_ready(&self) -> Result<(), ProviderError> {
        Err(Self::refusal())
    }
}
