//! `parse_status_callback`: reading Twilio's status-callback form.

use adapters_twilio::{parse_status_callback, StatusCallback, StatusCallbackError};
use domain::MessageStatus;

use crate::MESSAGE_SID;

fn callback(status: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", MESSAGE_SID),
        ("MessageStatus", status),
        ("SmsSid", MESSAGE_SID),
        ("SmsStatus", status),
        ("To", "+15551234567"),
    ]
    .iter()
    .chain(extra)
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    params.sort();
    params
}

fn status_of(twilio_status: &str) -> MessageStatus {
    parse_status_callback(&callback(twilio_status, &[]))
        .unwrap()
        .status
}

#[test]
fn a_delivered_callback_reads_as_delivered() {
    assert_eq!(
        parse_status_callback(&callback("delivered", &[])).unwrap(),
        StatusCallback {
            message_sid: MESSAGE_SID.to_owned(),
            status: MessageStatus::Delivered,
            error_code: None,
            error_message: None,
        }
    );
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

    assert_eq!(
        parse_status_callback(&params).unwrap(),
        StatusCallback {
            message_sid: MESSAGE_SID.to_owned(),
            status: MessageStatus::Undelivered,
            error_code: Some("30003".to_owned()),
            error_message: Some("Unreachable destination handset".to_owned()),
        }
    );
}

#[test]
fn a_failed_callback_reads_as_failed_with_its_code() {
    let parsed = parse_status_callback(&callback("failed", &[("ErrorCode", "30008")])).unwrap();

    assert_eq!(parsed.status, MessageStatus::Failed);
    assert_eq!(parsed.error_code.as_deref(), Some("30008"));
    assert_eq!(parsed.error_message, None);
}

#[test]
fn an_empty_error_code_is_no_error_code() {
    let parsed = parse_status_callback(&callback("sent", &[("ErrorCode", "")])).unwrap();

    assert_eq!(parsed.error_code, None);
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
            parse_status_callback(&callback(twilio_status, &[])),
            Err(StatusCallbackError::InboundStatus(twilio_status.to_owned()))
        );
    }
}

#[test]
fn an_unknown_status_is_refused() {
    assert_eq!(
        parse_status_callback(&callback("teleported", &[])),
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
        parse_status_callback(&params),
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
        parse_status_callback(&params),
        Err(StatusCallbackError::MissingField("MessageStatus"))
    );
}

#[test]
fn the_older_sms_fields_are_read_when_the_message_fields_are_absent() {
    let params: Vec<(String, String)> = callback("delivered", &[])
        .into_iter()
        .filter(|(name, _)| name != "MessageSid" && name != "MessageStatus")
        .collect();

    let parsed = parse_status_callback(&params).unwrap();

    assert_eq!(parsed.message_sid, MESSAGE_SID);
    assert_eq!(parsed.status, MessageStatus::Delivered);
}
