//! Asking Twilio what became of a message (`GET .../Messages/{MessageSid}.json`) or a call
//! (`GET .../Calls/{CallSid}.json`), for those whose status callback never came.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::DeliveryEvent;
use ports::{ProviderError, ProviderErrorKind, StatusLookup};
use reqwest::StatusCode;

use crate::config::is_sid_with_prefix;
use crate::provider::{price_from, price_of, read_error, TwilioSmsProvider, NAME};
use crate::status_callback::{call_status, message_status};
use crate::wire::{CallResource, MessageResource, NumberOrString};

#[async_trait]
impl StatusLookup for TwilioSmsProvider {
    fn provider(&self) -> &'static str {
        NAME
    }

    /// The Message resource's status, error and price, as a delivery event at `now`. Never
    /// retries.
    #[tracing::instrument(name = "twilio_lookup", skip_all, fields(twilio_sid = %provider_sid))]
    async fn lookup(
        &self,
        provider_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<DeliveryEvent, ProviderError> {
        if is_sid_with_prefix(provider_sid, "CA") {
            return self.lookup_call(provider_sid, now).await;
        }
        // SMS and MMS SIDs; anything else was not sent by this adapter.
        if !is_sid_with_prefix(provider_sid, "SM") && !is_sid_with_prefix(provider_sid, "MM") {
            return Err(unreadable(None, "not a twilio message sid"));
        }
        let response = self.get(self.message_url(provider_sid)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_error(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| unreadable(Some(status), "the answer was cut short"))?;
        let mut resource: MessageResource = serde_json::from_slice(&body)
            .map_err(|_| unreadable(Some(status), "the answer is not a message resource"))?;
        let twilio_status = resource
            .status
            .take()
            .ok_or_else(|| unreadable(Some(status), "the message resource has no status"))?;
        let message_status = message_status(&twilio_status)
            .map_err(|error| unreadable(Some(status), &error.to_string()))?;
        Ok(DeliveryEvent {
            status: message_status,
            price: price_of(&mut resource),
            error_code: resource.error_code.and_then(NumberOrString::into_text),
            error_message: resource
                .error_message
                .filter(|message| !message.trim().is_empty()),
            received_at: now,
        })
    }
}

impl TwilioSmsProvider {
    /// The Call resource's status and price, as a delivery event at `now`.
    async fn lookup_call(
        &self,
        call_sid: &str,
        now: DateTime<Utc>,
    ) -> Result<DeliveryEvent, ProviderError> {
        let response = self.get(self.call_url(call_sid)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_error(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| unreadable(Some(status), "the answer was cut short"))?;
        let call: CallResource = serde_json::from_slice(&body)
            .map_err(|_| unreadable(Some(status), "the answer is not a call resource"))?;
        let twilio_status = call
            .status
            .as_deref()
            .ok_or_else(|| unreadable(Some(status), "the call resource has no status"))?;
        let (call_status, why) = call_status(twilio_status)
            .map_err(|error| unreadable(Some(status), &error.to_string()))?;
        Ok(DeliveryEvent {
            status: call_status,
            price: price_from(call.price, call.price_unit),
            error_code: None,
            error_message: why.map(str::to_owned),
            received_at: now,
        })
    }
}

/// An answer we cannot use: asking again later will not help until something changes, but
/// nothing is lost either (the message stays `sent`).
fn unreadable(status: Option<StatusCode>, problem: &str) -> ProviderError {
    ProviderError {
        provider: NAME,
        kind: ProviderErrorKind::Permanent,
        http_status: status.map(|status| status.as_u16()),
        code: None,
        message: format!("twilio status lookup: {problem}"),
        more_info: None,
        retry_after: None,
        partly_sent: None,
    }
}
