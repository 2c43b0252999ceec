//! Test numbers (`TEST_NUMBERS`) for client teams' CI: a verification to one of them accepts a
//! fixed code, and its messages never reach a provider. Refused in production by the
//! configuration; every use is logged.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use domain::{PhoneNumber, VerificationCode};
use ports::{OutboundMessage, ProviderError, ProviderReceipt, SmsProvider};

/// Each test number and its fixed code.
#[derive(Debug, Clone, Default)]
pub struct TestNumbers(HashMap<PhoneNumber, VerificationCode>);

impl TestNumbers {
    /// `number:code` pairs, comma-separated: `+15005550001:123456,+15005550002:654321`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut numbers = HashMap::new();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (number, code) = pair
                .split_once(':')
                .ok_or_else(|| format!("expected number:code pairs, got `{pair}`"))?;
            let number = PhoneNumber::parse(number.trim())
                .map_err(|error| format!("`{}`: {error}", number.trim()))?;
            let code = VerificationCode::parse(code.trim())
                .map_err(|error| format!("the code of {}: {error}", number.masked()))?;
            if numbers.insert(number.clone(), code).is_some() {
                return Err(format!("{} is listed twice", number.masked()));
            }
        }
        Ok(Self(numbers))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fixed code of a test number; `None` for every other number.
    pub fn code_for(&self, number: &PhoneNumber) -> Option<&VerificationCode> {
        self.0.get(number)
    }
}

/// Answers for the test numbers itself, as if a provider had accepted the message, and hands
/// every other message to the real provider.
pub struct TestNumberSmsProvider {
    numbers: TestNumbers,
    provider: Arc<dyn SmsProvider>,
}

impl TestNumberSmsProvider {
    pub fn new(numbers: TestNumbers, provider: Arc<dyn SmsProvider>) -> Self {
        Self { numbers, provider }
    }
}

#[async_trait]
impl SmsProvider for TestNumberSmsProvider {
    fn name(&self) -> &'static str {
        self.provider.name()
    }

    fn can_send(&self, channel: domain::Channel) -> bool {
        self.provider.can_send(channel)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        if self.numbers.code_for(&message.to).is_none() {
            return self.provider.send(message).await;
        }
        tracing::warn!(
            message_id = %message.message_id,
            to = %message.to.masked(),
            "test number: message kept from every provider (TEST_NUMBERS)"
        );
        Ok(ProviderReceipt {
            provider: "test-number",
            provider_sid: format!("test-{}", message.message_id),
            segments: None,
            price: None,
        })
    }

    async fn check_ready(&self) -> Result<(), ProviderError> {
        self.provider.check_ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_bad_ones_say_what_is_wrong() {
        let numbers = TestNumbers::parse(" +15005550001:123456, +447700900123:0000 ").unwrap();
        let number = PhoneNumber::parse("+447700900123").unwrap();
        assert_eq!(numbers.code_for(&number).unwrap().expose(), "0000");
        assert!(numbers
            .code_for(&PhoneNumber::parse("+15551234567").unwrap())
            .is_none());

        for bad in [
            "+15005550001",
            "12:123456",
            "+15005550001:12",
            "+15005550001:1234,+15005550001:5678",
        ] {
            assert!(TestNumbers::parse(bad).is_err(), "{bad}");
        }
        // The code is never in the complaint.
        let error = TestNumbers::parse("+15005550001:12345678901").unwrap_err();
        assert!(!error.contains("12345678901"), "{error}");
    }
}
