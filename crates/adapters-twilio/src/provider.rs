//! Sending a message: one `POST` to the Messages resource (a call: to the Calls resource), and
//! the classification of whatever comes back.

use std::time::Duration;

use domain::{Amount, Channel, PhoneNumber};
use ports::{OutboundMessage, Price, ProviderError, ProviderErrorKind, ProviderReceipt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::{TwilioConfig, TwilioConfigError, TwilioCredentials, TwilioSender};
use crate::twiml;
use crate::wire::{CallResource, ErrorBody, MessageResource, NumberOrString};

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
const ACCOUNT_CODES: [&str; 5] = ["20003", "20005", "21212", "21606", "21210"];

/// Codes about a call's recipient: `To` cannot be reached (21214), is not a valid number
/// (21217), is blocked for the account (21216), or lies where the account's geographic
/// permissions do not let it call (21215). `21210` (the caller id is not verified) is the
/// account's, in [`ACCOUNT_CODES`].
const CALL_PERMANENT_CODES: [&str; 4] = ["21214", "21215", "21216", "21217"];

/// WhatsApp's refusals (Twilio's 630xx), from Twilio's list of errors and its mapping of
/// WhatsApp's own codes: none of them passes on a retry, so they are final for this channel (a
/// fallback to another channel may take over): `To` is not on WhatsApp (63003), the content
/// was refused (63005, 63021, 63030), no channel for our `From` (63007), a policy violation
/// (63013), blocked or opted out by the user (63014), not joined to the sandbox (63015),
/// outside the 24-hour window without an approved template (63016), an invalid recipient
/// (63024), the template missing for the language or its parameters not matching (63027,
/// 63028, 63029), the user part of a WhatsApp experiment (63032), Meta chose not to deliver
/// (63049).
const WHATSAPP_PERMANENT_CODES: [&str; 15] = [
    "63003", "63005", "63007", "63013", "63014", "63015", "63016", "63021", "63024", "63027",
    "63028", "63029", "63030", "63032", "63049",
];

/// WhatsApp's rate limit for the sender (63018): throttling, as 20429.
const WHATSAPP_TOO_MANY_REQUESTS_CODE: &str = "63018";

/// [`ports::SmsProvider::name`], also in every receipt and error.
pub(crate) const NAME: &str = "twilio";

/// Sends through Twilio's Messages resource. Owns one pooled HTTP client: build one and share it.
#[derive(Debug)]
pub struct TwilioSmsProvider {
    client: reqwest::Client,
    messages_url: Url,
    calls_url: Url,
    account_url: Url,
    account_sid: String,
    username: String,
    password: SecretString,
    sender: TwilioSender,
    voice_from: Option<PhoneNumber>,
    whatsapp_from: Option<PhoneNumber>,
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
        let calls_url = config.calls_url()?;
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
            calls_url,
            account_url,
            account_sid: config.account_sid,
            username,
            password,
            sender: config.sender,
            voice_from: config.voice_from,
            whatsapp_from: config.whatsapp_from,
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

    /// Who sends on `channel`: WhatsApp's own sender when one is configured, else the
    /// messaging service or number of every text.
    pub(crate) fn sender_for(&self, channel: Channel) -> TwilioSender {
        match (&self.whatsapp_from, channel) {
            (Some(number), Channel::Whatsapp) => TwilioSender::From(number.clone()),
            _ => self.sender.clone(),
        }
    }

    /// Whether calls can be placed: a number to call from is configured.
    pub(crate) fn places_calls(&self) -> bool {
        self.voice_from.is_some()
    }

    /// `.../Accounts/{AccountSid}/Calls/{sid}.json`, as [`Self::message_url`].
    pub(crate) fn call_url(&self, sid: &str) -> Url {
        let mut url = self.calls_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop().push("Calls").push(&format!("{sid}.json"));
        }
        url
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
        // The dispatcher's `send` span names the message in the log; this one is for debugging.
        level = "debug",
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
        let (url, form) = match message.channel {
            Channel::Voice => (self.calls_url.clone(), self.call_form(message)?),
            Channel::Sms | Channel::Whatsapp => (self.messages_url.clone(), self.form(message)),
        };
        let result = match self
            .client
            .post(url)
            .basic_auth(&self.username, Some(self.password.expose_secret()))
            .form(&form)
            .send()
            .await
        {
            Ok(response) if message.channel == Channel::Voice => read_call(response).await,
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

    /// The form fields, exactly: nothing optional is sent unless it has a value. A message with
    /// an approved template goes as `ContentSid` with its `ContentVariables`, never a `Body`
    /// (which WhatsApp refuses outside a conversation the user started: 63016).
    fn form(&self, message: &OutboundMessage) -> Vec<(&'static str, String)> {
        let address = |number: &PhoneNumber| address(message.channel, number);
        let mut form = vec![("To", address(&message.to))];
        form.push(match self.sender_for(message.channel) {
            TwilioSender::From(number) => ("From", address(&number)),
            TwilioSender::MessagingService(sid) => ("MessagingServiceSid", sid),
        });
        match &message.content_sid {
            Some(content_sid) => {
                form.push(("ContentSid", content_sid.clone()));
                form.push(("ContentVariables", message.body.clone()));
            }
            None => form.push(("Body", message.body.clone())),
        }
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

    /// A call's form: from `TWILIO_VOICE_FROM`, speaking the text as inline TwiML, its status
    /// reported to the same callback as messages'.
    fn call_form(
        &self,
        message: &OutboundMessage,
    ) -> Result<Vec<(&'static str, String)>, ProviderError> {
        let from = self.voice_from.as_ref().ok_or_else(|| ProviderError {
            provider: NAME,
            kind: ProviderErrorKind::Account,
            http_status: None,
            code: None,
            message: "no number to call from: TWILIO_VOICE_FROM is not set".to_owned(),
            more_info: None,
            retry_after: None,
            partly_sent: None,
        })?;
        let mut form = vec![
            ("To", message.to.as_str().to_owned()),
            ("From", from.as_str().to_owned()),
            (
                "Twiml",
                twiml::say(&message.body, message.locale.as_deref()),
            ),
        ];
        if let Some(url) = &self.status_callback_url {
            form.push(("StatusCallback", url.to_string()));
        }
        Ok(form)
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
        Channel::Sms | Channel::Voice => number.as_str().to_owned(),
        Channel::Whatsapp => format!("whatsapp:{}", number.as_str()),
    }
}

/// The answer to a call's create: its `CA...` SID. A call has no segments, and its price comes
/// once it has ended.
async fn read_call(response: reqwest::Response) -> Result<ProviderReceipt, ProviderError> {
    let status = response.status();
    if !status.is_success() {
        return Err(read_error(response).await);
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| accepted_but_unreadable(status))?;
    let call: CallResource =
        serde_json::from_slice(&body).map_err(|_| accepted_but_unreadable(status))?;
    let provider_sid = call
        .sid
        .filter(|sid| !sid.is_empty())
        .ok_or_else(|| accepted_but_unreadable(status))?;
    Ok(ProviderReceipt {
        provider: NAME,
        provider_sid,
        segments: None,
        price: None,
    })
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
    price_from(resource.price.take(), resource.price_unit.take())
}

/// [`price_of`] for any resource with a `price` and a `price_unit` (a call's too).
pub(crate) fn price_from(price: Option<NumberOrString>, unit: Option<String>) -> Option<Price> {
    match (
        price.and_then(NumberOrString::into_text),
        unit.filter(|unit| !unit.trim().is_empty()),
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

/// A Twilio code decides first (20429 and 63018 are throttling whatever the status; the listed codes are
/// what their list says whatever the status); then the status: 429 and 5xx may pass, 401 and
/// 403 are the account's, any other failure status will not pass.
fn classify(status: StatusCode, code: Option<&str>) -> ProviderErrorKind {
    match code {
        Some(TOO_MANY_REQUESTS_CODE | WHATSAPP_TOO_MANY_REQUESTS_CODE) => {
            ProviderErrorKind::Retryable
        }
        Some(code)
            if PERMANENT_CODES.contains(&code)
                || CALL_PERMANENT_CODES.contains(&code)
                || WHATSAPP_PERMANENT_CODES.contains(&code) =>
        {
            ProviderErrorKind::Permanent
        }
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
