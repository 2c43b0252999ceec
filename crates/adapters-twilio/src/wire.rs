//! Twilio's JSON, as it comes off the wire. Private: nothing here crosses the port.
//!
//! Every field is optional and unknown fields are ignored, because Twilio adds fields and sends
//! `null` freely. Numbers arrive as strings in some places (`num_segments`, `price`) and as
//! numbers in others (`code`, `error_code`), so both are accepted everywhere.

use serde::Deserialize;

/// The Message resource in a `201 Created` answer, a `200` to a lookup, or a list's item. No
/// `Debug`: its body may hold a one-time code.
#[derive(Deserialize)]
pub(crate) struct MessageResource {
    pub sid: Option<String>,
    pub status: Option<String>,
    /// Kept only while a list is searched for a message's body, never logged.
    pub body: Option<String>,
    /// RFC 2822 (`Thu, 24 Aug 2023 05:01:45 +0000`); set from the start, unlike `date_sent`.
    pub date_created: Option<String>,
    pub num_segments: Option<NumberOrString>,
    pub price: Option<NumberOrString>,
    pub price_unit: Option<String>,
    pub error_code: Option<NumberOrString>,
    pub error_message: Option<String>,
}

/// The Call resource in a `201 Created` answer or a `200` to a lookup: what the adapter reads
/// of it.
#[derive(Debug, Deserialize)]
pub(crate) struct CallResource {
    pub sid: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`,
    /// `canceled`.
    pub status: Option<String>,
    pub price: Option<NumberOrString>,
    pub price_unit: Option<String>,
}

/// A page of the Messages list (`GET .../Messages.json`), newest first.
#[derive(Deserialize)]
pub(crate) struct MessagePage {
    #[serde(default)]
    pub messages: Vec<MessageResource>,
}

/// The body of a 4xx or 5xx answer: `{"code": 21211, "message": "...", "more_info": "...",
/// "status": 400}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub code: Option<NumberOrString>,
    pub message: Option<String>,
    pub more_info: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrString {
    Number(serde_json::Number),
    String(String),
}

impl NumberOrString {
    /// The value as Twilio would print it, `None` when blank.
    pub fn into_text(self) -> Option<String> {
        let text = match self {
            NumberOrString::Number(number) => number.to_string(),
            NumberOrString::String(text) => text.trim().to_owned(),
        };
        (!text.is_empty()).then_some(text)
    }
}

/// The Account resource (`GET /2010-04-01/Accounts/{Sid}.json`). It also holds the account's
/// `auth_token`, which is deliberately not a field here.
#[derive(Debug, Deserialize)]
pub(crate) struct AccountResource {
    pub sid: Option<String>,
    pub friendly_name: Option<String>,
    /// `active`, `suspended` or `closed`.
    pub status: Option<String>,
}
