//! `parse_status_callback`: reading Twilio's status-callback form.

use adapters_twilio::{parse_status_callback, StatusCallback, StatusCallbackError};
use chrono::{DateTime, Utc};
use domain::{Channel, DeliveryEvent, MessageStatus, PhoneNumber};

use crate::{FROM, MESSAGE_SID, TO};

/// 2026-01-01T12:00:00Z.
fn received_at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_268_800, 0).unwrap()
}

fn parse(params: &[(String, String)]) -> Result<StatusCallback, StatusCallbackError> {
    parse_status_callback(params, received_at())
}

fn callback(status: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("From", FROM),
        ("MessageSid", MESSAGE_SID),
        ("MessageStatus", status),
        ("SmsSid", MESSAGE_SID),
        ("SmsStatus", status),
        ("To", TO),
    ]
    .iter()
    .chain(extra)
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    params.sort();
    params
}

fn status_of(twilio_status: &str) -> MessageStatus {
    parse(&callback(twilio_status, &[])).unwrap().event.status
}

#[test]
fn a_delivered_callback_reads_as_a_delivery_event_with_its_numbers() {
    assert_eq!(
        parse(&callback("delivered", &[])).unwrap(),
        StatusCallback {
            message_sid: MESSAGE_SID.to_owned(),
            to: Some(PhoneNumber::parse(TO).unwrap()),
            from: Some(FROM.to_owned()),
            channel: Channel::Sms,
            event: DeliveryEvent {
                status: MessageStatus::Delivered,
                error_code: None,
                error_message: None,
                price: None,
                received_at: received_at(),
            },
        }
    );
}

#[test]
fn a_whatsapp_callback_has_its_prefix_removed_from_the_recipient() {
    let params: Vec<(String, String)> = callback("read", &[])
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "To" | "From" => (name, format!("whatsapp:{value}")),
            _ => (name, value),
        })
        .collect();

    let parsed = parse(&params).unwrap();

    assert_eq!(parsed.channel, Channel::Whatsapp);
    assert_eq!(parsed.to, Some(PhoneNumber::parse(TO).unwrap()));
    assert_eq!(parsed.from.as_deref(), Some("whatsapp:+15005550006"));
    assert_eq!(parsed.event.status, MessageStatus::Delivered);
}

#[test]
fn an_alphanumeric_sender_is_kept_as_written() {
    let params: Vec<(String, String)> = callback("sent", &[])
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "From" => (name, "SmarterFirm".to_owned()),
            _ => (name, value),
        })
        .collect();

    assert_eq!(parse(&params).unwrap().from.as_deref(), Some("SmarterFirm"));
}

#[test]
fn a_recipient_that_is_not_a_phone_number_is_refused() {
    let params: Vec<(String, String)> = callback("delivered", &[])
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "To" => (name, "client:alice".to_owned()),
            _ => (name, value),
        })
        .collect();

    assert_eq!(parse(&params), Err(StatusCallbackError::InvalidTo));
}

#[test]
fn an_undelivered_callback_keeps_the_carrier_error() {
    let params = callback(
        "undelivered",
        &[
            ("ErrorCode", "30003"),
            ("ErrorMessage", "Unreachable destination handset"),
        ],
    );

    let parsed = parse(&params).unwrap();

    assert_eq!(parsed.message_sid, MESSAGE_SID);
    assert_eq!(
        parsed.event,
        DeliveryEvent {
            status: MessageStatus::Undelivered,
            error_code: Some("30003".to_owned()),
            error_message: Some("Unreachable destination handset".to_owned()),
            price: None,
            received_at: received_at(),
        }
    );
}

#[test]
fn a_failed_callback_reads_as_failed_with_its_code() {
    let parsed = parse(&callback("failed", &[("ErrorCode", "30008")])).unwrap();

    assert_eq!(parsed.event.status, MessageStatus::Failed);
    assert_eq!(parsed.event.error_code.as_deref(), Some("30008"));
    assert_eq!(parsed.event.error_message, None);
}

#[test]
fn an_empty_error_code_is_no_error_code() {
    let parsed = parse(&callback("sent", &[("ErrorCode", "")])).unwrap();

    assert_eq!(parsed.event.error_code, None);
}

#[test]
fn read_is_delivered() {
    assert_eq!(status_of("read"), MessageStatus::Delivered);
}

#[test]
fn statuses_before_the_carrier_answers_are_all_sent() {
    for twilio_status in ["queued", "accepted", "scheduled", "sending", "sent"] {
        assert_eq!(
            status_of(twilio_status),
            MessageStatus::Sent,
            "{twilio_status}"
        );
    }
}

#[test]
fn canceled_is_failed_and_partially_delivered_is_undelivered() {
    assert_eq!(status_of("canceled"), MessageStatus::Failed);
    assert_eq!(status_of("partially_delivered"), MessageStatus::Undelivered);
}

#[test]
fn inbound_statuses_are_refused() {
    for twilio_status in ["receiving", "received"] {
        assert_eq!(
            parse(&callback(twilio_status, &[])),
            Err(StatusCallbackError::InboundStatus(twilio_status.to_owned()))
        );
    }
}

#[test]
fn an_unknown_status_is_refused() {
    assert_eq!(
        parse(&callback("teleported", &[])),
        Err(StatusCallbackError::UnknownStatus("teleported".to_owned()))
    );
}

#[test]
fn a_callback_without_a_message_sid_is_refused() {
    let params: Vec<(String, String)> = callback("delivered", &[])
        .into_iter()
        .filter(|(name, _)| name != "MessageSid" && name != "SmsSid")
        .collect();

    assert_eq!(
        parse(&params),
        Err(StatusCallbackError::MissingField("MessageSid"))
    );
}

#[test]
fn a_callback_without_a_status_is_refused() {
    let params: Vec<(String, String)> = callback("delivered", &[])
        .into_iter()
        .filter(|(name, _)| name != "MessageStatus" && name != "SmsStatus")
        .collect();

    assert_eq!(
        parse(&params),
        Err(StatusCallbackError::MissingField("MessageStatus"))
    );
}

#[test]
fn the_older_sms_fields_are_read_when_the_message_fields_are_absent() {
    let params: Vec<(String, String)> = callback("delivered", &[])
        .into_iter()
        .filter(|(name, _)| name != "MessageSid" && name != "MessageStatus")
        .collect();

    let parsed = parse(&params).unwrap();

    assert_eq!(parsed.message_sid, MESSAGE_SID);
    assert_eq!(parsed.event.status, MessageStatus::Delivered);
}
