//! Sending a message: one `POST` to the Messages resource, and the classification of whatever
//! comes back.

use std::time::Duration;

use domain::{Amount, Channel, PhoneNumber};
use ports::{OutboundMessage, Price, ProviderError, ProviderErrorKind, ProviderReceipt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{TwilioConfig, TwilioConfigError, TwilioCredentials, TwilioSender};
use crate::wire::{ErrorBody, MessageResource, NumberOrString};

const USER_AGENT: &str = concat!("sms-notify/", env!("CARGO_PKG_VERSION"));

/// `ValidityPeriod` bounds, in seconds, from Twilio's API description ("integers from 1 to
/// 36000").
const MIN_VALIDITY_SECS: u64 = 1;
const MAX_VALIDITY_SECS: u64 = 36_000;

/// Twilio's "Too Many Requests" error code: the account or sender is throttled.
const TOO_MANY_REQUESTS_CODE: &str = "20429";

/// Codes about the recipient that no retry and no other provider can fix, whatever HTTP status
/// they come with: invalid `To` (21211), region not enabled (21408), recipient opted out
/// (21610), unreachable route (21612), not a mobile number (21614), unverified number on a trial
/// account (21608).
const PERMANENT_CODES: [&str; 6] = ["21211", "21408", "21610", "21612", "21614", "21608"];

/// Codes about our account, which only an operator can fix but another provider can work
/// around: authentication failed (20003), account not active (20005), invalid `From` (21212),
/// `From` not a message-capable number of the account (21606).
const ACCOUNT_CODES: [&str; 4] = ["20003", "20005", "21212", "21606"];

/// [`ports::SmsProvider::name`], also in every receipt and error.
pub(crate) const NAME: &str = "twilio";

/// Sends through Twilio's Messages resource. Owns one pooled HTTP client: build one and share it.
#[derive(Debug)]
pub struct TwilioSmsProvider {
    client: reqwest::Client,
    messages_url: Url,
    account_url: Url,
    account_sid: String,
    username: String,
    password: SecretString,
    sender: TwilioSender,
    status_callback_url: Option<Url>,
    request_timeout: Duration,
}

impl TwilioSmsProvider {
    /// Checks the configuration and builds the HTTP client.
    ///
    /// # Errors
    /// A [`TwilioConfigError`] naming what is wrong: a malformed SID, a base URL that cannot hold
    /// the API path, or an HTTP client that could not be built.
    pub fn new(config: TwilioConfig) -> Result<Self, TwilioConfigError> {
        config.check()?;
        let messages_url = config.messages_url()?;
        let account_url = config.account_url()?;
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirected POST would turn into a GET; Twilio never redirects the API.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(TwilioConfigError::HttpClient)?;
        let (username, password) = match config.credentials {
            TwilioCredentials::AuthToken(token) => (config.account_sid.clone(), token),
            TwilioCredentials::ApiKey { sid, secret } => (sid, secret),
        };
        Ok(Self {
            client,
            messages_url,
            account_url,
            account_sid: config.account_sid,
            username,
            password,
            sender: config.sender,
            status_callback_url: config.status_callback_url,
            request_timeout: config.request_timeout,
        })
    }

    pub(crate) fn account_sid(&self) -> &str {
        &self.account_sid
    }

    pub(crate) fn account_url(&self) -> Url {
        self.account_url.clone()
    }

    /// `.../Accounts/{AccountSid}/Messages.json`: create, and list.
    pub(crate) fn messages_url(&self) -> Url {
        self.messages_url.clone()
    }

    pub(crate) fn sender(&self) -> &TwilioSender {
        &self.sender
    }

    /// `.../Accounts/{AccountSid}/Messages/{sid}.json`; the segment is percent-encoded, so no
    /// SID can change the path's shape.
    pub(crate) fn message_url(&self, sid: &str) -> Url {
        let mut url = self.messages_url.clone();
        // The messages URL was built from path segments, so it has them.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop().push("Messages").push(&format!("{sid}.json"));
        }
        url
    }

    /// A `GET` with the credentials; no answer at all is the error.
    pub(crate) async fn get(&self, url: Url) -> Result<reqwest::Response, ProviderError> {
        self.client
            .get(url)
            .basic_auth(&self.username, Some(self.password.expose_secret()))
            .send()
            .await
            .map_err(|error| self.transport_error(error))
    }

    #[tracing::instrument(
        name = "twilio_send",
        skip_all,
        fields(
            message_id = %message.message_id,
            to = %message.to.masked(),
            channel = %message.channel,
        )
    )]
    pub(crate) async fn send_message(
        &self,
        message: &OutboundMessage,
    ) -> Result<ProviderReceipt, ProviderError> {
        let result = match self
            .client
            .post(self.messages_url.clone())
            .basic_auth(&self.username, Some(self.password.expose_secret()))
            .form(&self.form(message))
            .send()
            .await
        {
            Ok(response) => read_response(response).await,
            Err(error) => Err(self.transport_error(error)),
        };
        // The body is never logged, and neither is Twilio's error message: it quotes the number.
        match &result {
            // At debug: the dispatcher logs each send once, with this SID.
            Ok(receipt) => tracing::debug!(
                twilio_sid = %receipt.provider_sid,
                segments = receipt.segments,
                "SMS sent successfully"
            ),
            Err(error) => tracing::warn!(
                twilio_code = error.code.as_deref(),
                http_status = error.http_status,
                retryable = error.is_retryable(),
                "Failed to send SMS via Twilio"
            ),
        }
        result
    }

    /// The form fields, exactly: nothing optional is sent unless it has a value.
    fn form(&self, message: &OutboundMessage) -> Vec<(&'static str, String)> {
        let address = |number: &PhoneNumber| address(message.channel, number);
        let mut form = vec![("To", address(&message.to))];
        form.push(match &self.sender {
            TwilioSender::From(number) => ("From", address(number)),
            TwilioSender::MessagingService(sid) => ("MessagingServiceSid", sid.clone()),
        });
        form.push(("Body", message.body.clone()));
        if let Some(url) = &self.status_callback_url {
            form.push(("StatusCallback", url.to_string()));
        }
        if let Some(validity) = message.validity {
            // Whole seconds, rounded down: a code must not be delivered after it has expired.
            let seconds = validity
                .as_secs()
                .clamp(MIN_VALIDITY_SECS, MAX_VALIDITY_SECS);
            form.push(("ValidityPeriod", seconds.to_string()));
        }
        form
    }

    /// No answer at all. Everything but a request we could not even build may succeed later.
    /// Only a failure to connect surely left Twilio without the request: after a timeout or a
    /// broken connection it may have accepted the message, and a retry may send it twice.
    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        // Checked first: a connect timeout is a timeout too, but nothing was written.
        let (kind, summary) = if error.is_connect() {
            (
                ProviderErrorKind::Retryable,
                "could not connect to twilio".to_owned(),
            )
        } else if error.is_timeout() {
            (
                ProviderErrorKind::Ambiguous,
                format!(
                    "twilio did not answer within {} ms",
                    self.request_timeout.as_millis()
                ),
            )
        } else if error.is_builder() {
            (
                ProviderErrorKind::Permanent,
                "could not build the request to twilio".to_owned(),
            )
        } else {
            (
                ProviderErrorKind::Ambiguous,
                "the connection to twilio failed".to_owned(),
            )
        };
        ProviderError {
            provider: NAME,
            kind,
            http_status: None,
            code: None,
            message: format!("{summary}: {}", error_chain(&error.without_url())),
            more_info: None,
            retry_after: None,
            partly_sent: None,
        }
    }
}

/// A number as Twilio writes it on `channel`: `To`, `From`, and the list's filters.
pub(crate) fn address(channel: Channel, number: &PhoneNumber) -> String {
    match channel {
        Channel::Sms => number.as_str().to_owned(),
        Channel::Whatsapp => format!("whatsapp:{}", number.as_str()),
    }
}

async fn read_response(response: reqwest::Response) -> Result<ProviderReceipt, ProviderError> {
    let status = response.status();
    if !status.is_success() {
        return Err(read_error(response).await);
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| accepted_but_unreadable(status))?;
    receipt_from(status, &body)
}

/// A failure answer, classified. A body cut short is as unreadable as an HTML one: the status
/// still says enough.
pub(crate) async fn read_error(response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    error_from(status, retry_after, &body)
}

/// The price of a Message resource, when Twilio has set it, as the amount spent: Twilio's
/// charges are negative (`-0.00790`), ours positive (`0.0079`). A price that is not a plain
/// decimal of sane size is dropped rather than stored.
pub(crate) fn price_of(resource: &mut MessageResource) -> Option<Price> {
    match (
        resource.price.take().and_then(NumberOrString::into_text),
        resource
            .price_unit
            .take()
            .filter(|unit| !unit.trim().is_empty()),
    ) {
        (Some(amount), Some(currency)) => match amount.parse::<Amount>() {
            Ok(charge) => Some(Price {
                amount: charge.negated().to_string(),
                currency,
            }),
            Err(invalid) => {
                tracing::warn!(%invalid, "twilio's price is unreadable; the message has none");
                None
            }
        },
        _ => None,
    }
}

fn receipt_from(status: StatusCode, body: &[u8]) -> Result<ProviderReceipt, ProviderError> {
    let resource: MessageResource =
        serde_json::from_slice(body).map_err(|_| accepted_but_unreadable(status))?;
    receipt_of(resource).ok_or_else(|| accepted_but_unreadable(status))
}

/// The receipt a Message resource stands for; `None` without a SID.
pub(crate) fn receipt_of(mut resource: MessageResource) -> Option<ProviderReceipt> {
    let price = price_of(&mut resource);
    let provider_sid = resource.sid.filter(|sid| !sid.is_empty())?;
    if let Some(error_code) = resource.error_code.and_then(NumberOrString::into_text) {
        tracing::warn!(
            twilio_sid = %provider_sid,
            twilio_code = %error_code,
            twilio_status = resource.status.as_deref(),
            "Twilio accepted the message with an error code"
        );
    }
    let segments = resource
        .num_segments
        .and_then(NumberOrString::into_text)
        .and_then(|text| text.parse().ok());
    Some(ProviderReceipt {
        provider: NAME,
        provider_sid,
        segments,
        price,
    })
}

/// Twilio took the message (2xx) but its answer has no readable SID. Permanent, because a retry
/// would send the message a second time; the message did go out, only its tracking is lost.
fn accepted_but_unreadable(status: StatusCode) -> ProviderError {
    ProviderError {
        provider: NAME,
        kind: ProviderErrorKind::Permanent,
        http_status: Some(status.as_u16()),
        code: None,
        message: format!(
            "twilio accepted the message ({status}) but its answer had no readable message sid"
        ),
        more_info: None,
        retry_after: None,
        partly_sent: None,
    }
}

fn error_from(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
    let (code, message, more_info) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => (
            error.code.and_then(NumberOrString::into_text),
            error.message.filter(|message| !message.trim().is_empty()),
            error
                .more_info
                .filter(|more_info| !more_info.trim().is_empty()),
        ),
        Err(_) => (None, None, None),
    };
    ProviderError {
        provider: NAME,
        kind: classify(status, code.as_deref()),
        http_status: Some(status.as_u16()),
        message: message
            .unwrap_or_else(|| format!("twilio answered {status} without a readable error")),
        code,
        more_info,
        retry_after,
        partly_sent: None,
    }
}

/// A Twilio code decides first (20429 is throttling whatever the status; the listed codes are
/// what their list says whatever the status); then the status: 429 and 5xx may pass, 401 and
/// 403 are the account's, any other failure status will not pass.
fn classify(status: StatusCode, code: Option<&str>) -> ProviderErrorKind {
    match code {
        Some(TOO_MANY_REQUESTS_CODE) => ProviderErrorKind::Retryable,
        Some(code) if PERMANENT_CODES.contains(&code) => ProviderErrorKind::Permanent,
        Some(code) if ACCOUNT_CODES.contains(&code) => ProviderErrorKind::Account,
        _ if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
            ProviderErrorKind::Retryable
        }
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            ProviderErrorKind::Account
        }
        _ => ProviderErrorKind::Permanent,
    }
}

/// `Retry-After` in whole seconds (the form Twilio uses); an HTTP date is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `outer: inner: innermost`, so that "connection refused" is not hidden behind "error sending
/// request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
