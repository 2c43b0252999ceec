//! Reading the form Twilio posts to our `StatusCallback` URL when a message changes status.

use chrono::{DateTime, Utc};
use domain::{Channel, DeliveryEvent, MessageStatus, PhoneNumber};

/// What a status callback says about one of our messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// Twilio's SID for the message (`SM...`), as returned when it was sent.
    pub message_sid: String,
    /// The recipient (`To`), without its `whatsapp:` prefix; `channel` keeps what it said.
    pub to: Option<PhoneNumber>,
    /// The sender (`From`) as Twilio wrote it: a number, an alphanumeric sender id, or a
    /// `whatsapp:` address.
    pub from: Option<String>,
    pub channel: Channel,
    /// Twilio's callbacks carry no price (it comes with the `201` of the send), so the
    /// event's price is `None`.
    pub event: DeliveryEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusCallbackError {
    #[error("the status callback has no `{0}` field")]
    MissingField(&'static str),
    #[error("the status callback has an unknown message status `{0}`")]
    UnknownStatus(String),
    /// `receiving` and `received` describe messages sent *to* a Twilio number; we only send.
    #[error("the status callback is about an inbound message (status `{0}`)")]
    InboundStatus(String),
    #[error("the status callback's `To` is not a phone number")]
    InvalidTo,
}

/// Reads the form fields of a status callback (check [`crate::validate_signature`] first).
///
/// Twilio's statuses map onto ours as follows. `queued`, `accepted`, `scheduled`, `sending` and
/// `sent` all mean that Twilio holds the message and has not heard from the carrier yet, which is
/// exactly our `Sent` ("accepted by the provider"); mapping them to `Sending` would read as a
/// move backwards, and our status machine would ignore it anyway. `delivered` and `read`
/// (WhatsApp: delivered, then read) are `Delivered`; `undelivered` and `partially_delivered` are
/// `Undelivered` (the carrier could not hand over the whole message); `failed` and `canceled`
/// (Twilio will never send it) are `Failed`.
///
/// `received_at` is when the callback arrived: the event's time.
///
/// # Errors
/// A missing `MessageSid`/`MessageStatus` (the older `SmsSid`/`SmsStatus` are accepted in their
/// place), an inbound status, a status Twilio does not document, or a `To` that is not a phone
/// number.
pub fn parse_status_callback(
    params: &[(String, String)],
    received_at: DateTime<Utc>,
) -> Result<StatusCallback, StatusCallbackError> {
    let field = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    };
    let message_sid = field("MessageSid")
        .or_else(|| field("SmsSid"))
        .ok_or(StatusCallbackError::MissingField("MessageSid"))?;
    let twilio_status = field("MessageStatus")
        .or_else(|| field("SmsStatus"))
        .ok_or(StatusCallbackError::MissingField("MessageStatus"))?;
    let status = message_status(twilio_status)?;
    let (channel, to) = match field("To") {
        Some(to) => {
            let (channel, number) = match to.strip_prefix(WHATSAPP_PREFIX) {
                Some(number) => (Channel::Whatsapp, number),
                None => (Channel::Sms, to),
            };
            let number = PhoneNumber::parse(number).map_err(|_| StatusCallbackError::InvalidTo)?;
            (channel, Some(number))
        }
        None => (Channel::Sms, None),
    };
    Ok(StatusCallback {
        message_sid: message_sid.to_owned(),
        to,
        from: field("From").map(str::to_owned),
        channel,
        event: DeliveryEvent {
            status,
            error_code: field("ErrorCode").map(str::to_owned),
            error_message: field("ErrorMessage").map(str::to_owned),
            price: None,
            received_at,
        },
    })
}

const WHATSAPP_PREFIX: &str = "whatsapp:";

/// Twilio's status of an outbound message as ours (see [`parse_status_callback`]); also what a
/// status lookup reads.
pub(crate) fn message_status(twilio_status: &str) -> Result<MessageStatus, StatusCallbackError> {
    Ok(match twilio_status {
        "queued" | "accepted" | "scheduled" | "sending" | "sent" => MessageStatus::Sent,
        "delivered" | "read" => MessageStatus::Delivered,
        "undelivered" | "partially_delivered" => MessageStatus::Undelivered,
        "failed" | "canceled" => MessageStatus::Failed,
        "receiving" | "received" => {
            return Err(StatusCallbackError::InboundStatus(twilio_status.to_owned()))
        }
        other => return Err(StatusCallbackError::UnknownStatus(other.to_owned())),
    })
}
