//! Reading the form Twilio posts to our `StatusCallback` URL when a message changes status, or
//! a call ends.

use chrono::{DateTime, Utc};
use domain::{Channel, DeliveryEvent, MessageStatus, PhoneNumber};

/// What a status callback says about one of our messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// Twilio's SID for the message (`SM...`) or call (`CA...`), as returned when it was sent.
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
/// A call's callback (`CallSid`, `CallStatus`) is read alike, and its status maps as
/// [`call_status`] says; its `To` is a plain number, its channel `Voice`.
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
    if field("MessageSid").or_else(|| field("SmsSid")).is_none() {
        if let Some(call_sid) = field("CallSid") {
            return parse_call(call_sid, &field, received_at);
        }
    }
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

fn parse_call<'a>(
    call_sid: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
    received_at: DateTime<Utc>,
) -> Result<StatusCallback, StatusCallbackError> {
    let twilio_status =
        field("CallStatus").ok_or(StatusCallbackError::MissingField("CallStatus"))?;
    let (status, why) = call_status(twilio_status)?;
    let to = field("To")
        .map(|to| PhoneNumber::parse(to).map_err(|_| StatusCallbackError::InvalidTo))
        .transpose()?;
    Ok(StatusCallback {
        message_sid: call_sid.to_owned(),
        to,
        from: field("From").map(str::to_owned),
        channel: Channel::Voice,
        event: DeliveryEvent {
            status,
            error_code: field("ErrorCode").map(str::to_owned),
            error_message: field("ErrorMessage")
                .map(str::to_owned)
                .or(why.map(str::to_owned)),
            price: None,
            received_at,
        },
    })
}

/// A call's status as a message's, with what an unsuccessful one says happened. A call that
/// has not ended (`queued`, `initiated`, `ringing`, `in-progress`) is `Sent`: Twilio holds it.
/// `completed` (answered, the TwiML spoken to the end or hung up on) is `Delivered`; `busy`
/// and `no-answer` are `Undelivered`, as a text the carrier could not hand over (a later call
/// may reach the person); `failed` (Twilio could not place it) and `canceled` are `Failed`,
/// as for messages.
pub(crate) fn call_status(
    twilio_status: &str,
) -> Result<(MessageStatus, Option<&'static str>), StatusCallbackError> {
    Ok(match twilio_status {
        "queued" | "initiated" | "ringing" | "in-progress" => (MessageStatus::Sent, None),
        "completed" => (MessageStatus::Delivered, None),
        "busy" => (MessageStatus::Undelivered, Some("the line was busy")),
        "no-answer" => (MessageStatus::Undelivered, Some("nobody answered the call")),
        "failed" => (MessageStatus::Failed, Some("the call could not be placed")),
        "canceled" => (MessageStatus::Failed, Some("the call was canceled")),
        other => return Err(StatusCallbackError::UnknownStatus(other.to_owned())),
    })
}

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
