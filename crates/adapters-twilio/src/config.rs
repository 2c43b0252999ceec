//! What the adapter needs to know to talk to Twilio, and what can be wrong with it.

use std::time::Duration;

use domain::PhoneNumber;
use secrecy::SecretString;
use url::Url;

/// Everything [`crate::TwilioSmsProvider::new`] needs. Checked once, at start-up.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` in production ([`TwilioConfig::DEFAULT_BASE_URL`]); tests point
    /// it at a mock server. A path prefix is kept.
    pub base_url: Url,
    /// The account (`AC...`) whose Messages resource is called. It stays in the path even when
    /// authenticating with an API key.
    pub account_sid: String,
    pub credentials: TwilioCredentials,
    pub sender: TwilioSender,
    /// The number calls come from (`TWILIO_VOICE_FROM`): without it, the adapter places no
    /// call ([`ports::SmsProvider::can_send`] says so).
    pub voice_from: Option<PhoneNumber>,
    /// The WhatsApp sender (`TWILIO_WHATSAPP_FROM`); without it, WhatsApp goes from `sender`.
    pub whatsapp_from: Option<PhoneNumber>,
    /// Full URL of our status-callback endpoint, sent as `StatusCallback` when set (with calls
    /// too: Twilio signs their callbacks alike).
    pub status_callback_url: Option<Url>,
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long a whole request may take, connecting included.
    pub request_timeout: Duration,
}

impl TwilioConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.twilio.com";
}

/// How the adapter proves who it is (HTTP Basic auth).
#[derive(Debug, Clone)]
pub enum TwilioCredentials {
    /// The account SID and its auth token.
    AuthToken(SecretString),
    /// An API key (`SK...`) and its secret: revocable without rotating the auth token.
    ApiKey { sid: String, secret: SecretString },
}

/// Who the message comes from.
#[derive(Debug, Clone)]
pub enum TwilioSender {
    /// One of the account's phone numbers (`From`).
    From(PhoneNumber),
    /// A Messaging Service (`MG...`), which picks the sending number itself (`MessagingServiceSid`).
    MessagingService(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TwilioConfigError {
    #[error("the twilio account sid must start with `AC` followed by letters and digits")]
    InvalidAccountSid,
    #[error(
        "the twilio messaging service sid must start with `MG` followed by letters and digits"
    )]
    InvalidMessagingServiceSid,
    #[error("the twilio api key sid must not be empty and may contain only letters and digits")]
    InvalidApiKeySid,
    #[error("the twilio base url must be an http or https url that can hold a path, not `{0}`")]
    InvalidBaseUrl(String),
    #[error("could not build the http client for twilio")]
    HttpClient(#[source] reqwest::Error),
}

/// A Twilio SID: two letters of type, then letters and digits (32 hex digits in production; not
/// enforced beyond being alphanumeric, so test accounts work, but enough to keep it from changing
/// the shape of a URL path).
pub(crate) fn is_sid_with_prefix(sid: &str, prefix: &str) -> bool {
    sid.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl TwilioConfig {
    /// Checks the parts that would otherwise fail on every send, so that configuration can
    /// refuse them before anything starts.
    ///
    /// # Errors
    /// A malformed account, messaging service or API key SID, or a base URL that cannot hold
    /// the API's path.
    pub fn check(&self) -> Result<(), TwilioConfigError> {
        if !is_sid_with_prefix(&self.account_sid, "AC") {
            return Err(TwilioConfigError::InvalidAccountSid);
        }
        if let TwilioSender::MessagingService(sid) = &self.sender {
            if !is_sid_with_prefix(sid, "MG") {
                return Err(TwilioConfigError::InvalidMessagingServiceSid);
            }
        }
        if let TwilioCredentials::ApiKey { sid, .. } = &self.credentials {
            if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(TwilioConfigError::InvalidApiKeySid);
            }
        }
        self.messages_url()?;
        self.calls_url()?;
        Ok(())
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/Messages.json`.
    pub(crate) fn messages_url(&self) -> Result<Url, TwilioConfigError> {
        self.api_url(&["Accounts", self.account_sid.as_str(), "Messages.json"])
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/Calls.json`.
    pub(crate) fn calls_url(&self) -> Result<Url, TwilioConfigError> {
        self.api_url(&["Accounts", self.account_sid.as_str(), "Calls.json"])
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}.json`.
    pub(crate) fn account_url(&self) -> Result<Url, TwilioConfigError> {
        self.api_url(&["Accounts", &format!("{}.json", self.account_sid)])
    }

    /// `{base}/2010-04-01/{segments...}`.
    fn api_url(&self, segments: &[&str]) -> Result<Url, TwilioConfigError> {
        let invalid = || TwilioConfigError::InvalidBaseUrl(self.base_url.to_string());
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(invalid());
        }
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .pop_if_empty()
            .push("2010-04-01")
            .extend(segments);
        Ok(url)
    }
}
