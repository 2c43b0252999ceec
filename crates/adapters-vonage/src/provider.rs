//! Vonage's SMS API as an `SmsProvider`: one POST per message, every part of a long message
//! judged, failures classified so that the dispatcher and failover know what may be retried.

use std::time::Duration;

use async_trait::async_trait;
use domain::{Amount, Channel, Encoding};
use ports::{
    OutboundMessage, Price, ProviderError, ProviderErrorKind, ProviderReceipt, SmsProvider,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

const USER_AGENT: &str = concat!("sms-notify/", env!("CARGO_PKG_VERSION"));

/// Vonage's bounds on `ttl`, in milliseconds (20 seconds to 7 days).
const MIN_TTL_MS: u128 = 20_000;
const MAX_TTL_MS: u128 = 604_800_000;

/// Statuses a later attempt may clear: throttled (1), internal error (5), too many binds (10),
/// communication failure (13).
const RETRYABLE_STATUSES: [&str; 4] = ["1", "5", "10", "13"];

/// Statuses about our account, which another provider can work around: invalid credentials
/// (4), account barred (8), out of credit (9), not enabled for this API (11), invalid
/// signature (14), sender not allowed (15). Every other non-zero status is about the message
/// or its recipient, and permanent.
const ACCOUNT_STATUSES: [&str; 6] = ["4", "8", "9", "11", "14", "15"];

/// [`SmsProvider::name`], also in every receipt and error.
const NAME: &str = "vonage";

#[derive(Debug, Clone)]
pub struct VonageConfig {
    /// `https://rest.nexmo.com` in production ([`VonageConfig::DEFAULT_BASE_URL`]).
    pub base_url: Url,
    pub api_key: String,
    pub api_secret: SecretString,
    /// A number in E.164 or an alphanumeric sender id, as the account allows.
    pub from: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl VonageConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://rest.nexmo.com";
}

#[derive(Debug, thiserror::Error)]
pub enum VonageConfigError {
    #[error("the vonage api key must not be empty")]
    MissingApiKey,
    #[error("the vonage sender must not be empty")]
    MissingFrom,
    #[error("the vonage base url must be an http or https url that can hold a path, not `{0}`")]
    InvalidBaseUrl(String),
    #[error("cannot build the http client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Sends through Vonage's SMS API with one pooled HTTP client.
#[derive(Debug)]
pub struct VonageSmsProvider {
    client: reqwest::Client,
    sms_url: Url,
    api_key: String,
    api_secret: SecretString,
    from: String,
    request_timeout: Duration,
}

impl VonageSmsProvider {
    /// # Errors
    /// A [`VonageConfigError`] naming what is wrong with the configuration.
    pub fn new(config: VonageConfig) -> Result<Self, VonageConfigError> {
        if config.api_key.trim().is_empty() {
            return Err(VonageConfigError::MissingApiKey);
        }
        if config.from.trim().is_empty() {
            return Err(VonageConfigError::MissingFrom);
        }
        let invalid_base = || VonageConfigError::InvalidBaseUrl(config.base_url.to_string());
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(invalid_base());
        }
        let mut sms_url = config.base_url.clone();
        sms_url
            .path_segments_mut()
            .map_err(|()| invalid_base())?
            .pop_if_empty()
            .extend(["sms", "json"]);
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(VonageConfigError::HttpClient)?;
        Ok(Self {
            client,
            sms_url,
            api_key: config.api_key,
            api_secret: config.api_secret,
            // Vonage wants numbers without the `+`; a sender id is sent as it is.
            from: config.from.trim_start_matches('+').to_owned(),
            request_timeout: config.request_timeout,
        })
    }

    /// The form fields, exactly.
    fn form(&self, message: &OutboundMessage) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("api_key", self.api_key.clone()),
            ("api_secret", self.api_secret.expose_secret().to_owned()),
            ("from", self.from.clone()),
            ("to", message.to.as_str().trim_start_matches('+').to_owned()),
            ("text", message.body.clone()),
            // Ties Vonage's delivery receipts and lookups back to our message.
            ("client-ref", message.message_id.to_string()),
        ];
        // Without `unicode`, Vonage sends GSM-7 and mangles any other character.
        if domain::analyze(&message.body).encoding == Encoding::Ucs2 {
            form.push(("type", "unicode".to_owned()));
        }
        if let Some(validity) = message.validity {
            let ttl = validity.as_millis().clamp(MIN_TTL_MS, MAX_TTL_MS);
            form.push(("ttl", ttl.to_string()));
        }
        form
    }

    #[tracing::instrument(
        name = "vonage_send",
        skip_all,
        fields(message_id = %message.message_id, to = %message.to.masked())
    )]
    async fn send_message(
        &self,
        message: &OutboundMessage,
    ) -> Result<ProviderReceipt, ProviderError> {
        if message.channel != Channel::Sms {
            return Err(error(
                ProviderErrorKind::Permanent,
                None,
                None,
                format!("vonage's sms api cannot send {} messages", message.channel),
            ));
        }
        let result = match self
            .client
            .post(self.sms_url.clone())
            .form(&self.form(message))
            .send()
            .await
        {
            Ok(response) => read_response(response).await,
            Err(failure) => Err(self.transport_error(&failure)),
        };
        match &result {
            Ok(receipt) => {
                tracing::debug!(vonage_id = %receipt.provider_sid, "SMS sent successfully")
            }
            Err(failure) => tracing::warn!(
                vonage_status = failure.code.as_deref(),
                http_status = failure.http_status,
                retryable = failure.is_retryable(),
                "Failed to send SMS via Vonage"
            ),
        }
        result
    }

    fn transport_error(&self, failure: &reqwest::Error) -> ProviderError {
        let summary = if failure.is_timeout() {
            format!(
                "vonage did not answer within {} ms",
                self.request_timeout.as_millis()
            )
        } else if failure.is_connect() {
            "could not connect to vonage".to_owned()
        } else {
            "the connection to vonage failed".to_owned()
        };
        error(ProviderErrorKind::Retryable, None, None, summary)
    }
}

#[async_trait]
impl SmsProvider for VonageSmsProvider {
    /// Vonage's SMS API sends SMS only.
    fn can_send(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        self.send_message(message).await
    }
}

#[derive(Deserialize)]
struct SmsResponse {
    #[serde(default)]
    messages: Vec<MessagePart>,
}

/// One part of a (possibly concatenated) message: Vonage answers one per segment.
#[derive(Deserialize)]
struct MessagePart {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
    #[serde(rename = "message-price")]
    message_price: Option<String>,
}

async fn read_response(response: reqwest::Response) -> Result<ProviderReceipt, ProviderError> {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let kind = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            ProviderErrorKind::Retryable
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            ProviderErrorKind::Account
        } else {
            ProviderErrorKind::Permanent
        };
        return Err(error(
            kind,
            Some(status),
            None,
            format!("vonage answered {status}"),
        ));
    }
    let parsed: SmsResponse = serde_json::from_slice(&body).map_err(|_| {
        // Accepted or not, we cannot tell; a retry could send twice, so it is not retried.
        error(
            ProviderErrorKind::Permanent,
            Some(status),
            None,
            "vonage answered with an unreadable body".to_owned(),
        )
    })?;
    let total = parsed.messages.len();
    let accepted: Vec<&MessagePart> = parsed
        .messages
        .iter()
        .filter(|part| part.status == "0")
        .collect();
    let Some(refused) = parsed.messages.iter().find(|part| part.status != "0") else {
        return receipt_of(&accepted, total).ok_or_else(|| {
            error(
                ProviderErrorKind::Permanent,
                Some(status),
                None,
                "vonage accepted the message but named no message id".to_owned(),
            )
        });
    };
    let text = refused
        .error_text
        .clone()
        .unwrap_or_else(|| format!("vonage refused the message (status {})", refused.status));
    if accepted.is_empty() {
        let kind = if RETRYABLE_STATUSES.contains(&refused.status.as_str()) {
            ProviderErrorKind::Retryable
        } else if ACCOUNT_STATUSES.contains(&refused.status.as_str()) {
            ProviderErrorKind::Account
        } else {
            ProviderErrorKind::Permanent
        };
        return Err(error(
            kind,
            Some(status),
            Some(refused.status.clone()),
            text,
        ));
    }
    // Some parts went out: Vonage cannot send only the others, and sending the whole again
    // would repeat these, so the failure is final whatever the refusal says.
    let mut failure = error(
        ProviderErrorKind::Permanent,
        Some(status),
        Some(refused.status.clone()),
        format!("{text} (vonage sent {} of {total} parts)", accepted.len()),
    );
    failure.partly_sent = receipt_of(&accepted, total).map(Box::new);
    Err(failure)
}

/// The accepted parts as one receipt: their ids in order, comma-separated, and their prices
/// added up. `None` when Vonage named none of their ids.
fn receipt_of(accepted: &[&MessagePart], total: usize) -> Option<ProviderReceipt> {
    let ids: Vec<&str> = accepted
        .iter()
        .filter_map(|part| part.message_id.as_deref())
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() {
        return None;
    }
    Some(ProviderReceipt {
        provider: NAME,
        provider_sid: ids.join(","),
        segments: u32::try_from(total).ok(),
        price: total_price(accepted),
    })
}

/// The parts' prices added up, in euros (Vonage bills its accounts in EUR): Vonage's own
/// positive amounts, exactly. `None` when a part's price is missing or unreadable.
fn total_price(parts: &[&MessagePart]) -> Option<Price> {
    let mut total = Amount::ZERO;
    for part in parts {
        let price = match part.message_price.as_deref()?.parse::<Amount>() {
            Ok(price) => price,
            Err(invalid) => {
                tracing::warn!(%invalid, "vonage's price is unreadable; the message has none");
                return None;
            }
        };
        total = total.checked_add(price)?;
    }
    Some(Price {
        amount: total.to_string(),
        currency: "EUR".to_owned(),
    })
}

fn error(
    kind: ProviderErrorKind,
    status: Option<StatusCode>,
    code: Option<String>,
    message: String,
) -> ProviderError {
    ProviderError {
        provider: NAME,
        kind,
        http_status: status.map(|status| status.as_u16()),
        code,
        message,
        more_info: None,
        retry_after: None,
        partly_sent: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(price: &str) -> MessagePart {
        MessagePart {
            status: "0".into(),
            message_id: Some("x".into()),
            error_text: None,
            message_price: Some(price.into()),
        }
    }

    fn total(prices: &[&str]) -> Option<String> {
        let parts: Vec<MessagePart> = prices.iter().map(|price| part(price)).collect();
        let parts: Vec<&MessagePart> = parts.iter().collect();
        total_price(&parts).map(|price| {
            assert_eq!(price.currency, "EUR");
            price.amount
        })
    }

    #[test]
    fn prices_of_parts_add_up_without_rounding() {
        assert_eq!(total(&["0.03330000", "0.0333"]).as_deref(), Some("0.0666"));
        assert_eq!(
            total(&["999999.99999999", "999999.99999999"]).as_deref(),
            Some("1999999.99999998")
        );
    }

    #[test]
    fn a_huge_or_malformed_price_leaves_the_message_without_one() {
        for price in ["abc", "1e400", &"9".repeat(40), "0.000000001", "-"] {
            assert_eq!(total(&["0.0333", price]), None, "{price:?}");
        }
    }
}
