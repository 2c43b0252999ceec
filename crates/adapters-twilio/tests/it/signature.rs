//! `validate_signature`: the `X-Twilio-Signature` check.

use adapters_twilio::validate_signature;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha1::Sha1;

const URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";

fn token() -> SecretString {
    SecretString::from("0123456789abcdef0123456789abcdef")
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// A status callback's fields, in the order a form might carry them (not sorted).
fn callback_params() -> Vec<(String, String)> {
    params(&[
        ("MessageStatus", "delivered"),
        ("To", "+15551234567"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("SmsStatus", "delivered"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
    ])
}

/// The signature computed here by hand, from the signed text written out in full.
fn hand_signature(signed_text: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
    mac.update(signed_text.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn hand_signed_callback(url: &str) -> String {
    hand_signature(&format!(
        "{url}\
         AccountSidAC0123456789abcdef0123456789abcdef\
         ApiVersion2010-04-01\
         From+15005550006\
         MessageSidSM0123456789abcdef0123456789abcdef\
         MessageStatusdelivered\
         SmsSidSM0123456789abcdef0123456789abcdef\
         SmsStatusdelivered\
         To+15551234567"
    ))
}

#[test]
fn matches_the_example_in_twilios_security_documentation() {
    // The worked example of Twilio's "Security" page (auth token `12345`).
    let params = params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]);

    assert!(validate_signature(
        &SecretString::from("12345"),
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        &params,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
    ));
}

#[test]
fn a_signature_over_the_url_and_sorted_params_is_valid() {
    let signature = hand_signed_callback(URL);

    assert!(validate_signature(
        &token(),
        URL,
        &callback_params(),
        &signature
    ));
}

#[test]
fn a_signature_under_another_token_is_invalid() {
    let signature = hand_signed_callback(URL);

    assert!(!validate_signature(
        &SecretString::from("another-token"),
        URL,
        &callback_params(),
        &signature
    ));
}

#[test]
fn a_changed_param_invalidates_the_signature() {
    let signature = hand_signed_callback(URL);
    let mut tampered = callback_params();
    tampered[0].1 = "failed".to_owned();

    assert!(!validate_signature(&token(), URL, &tampered, &signature));
}

#[test]
fn an_added_param_invalidates_the_signature() {
    let signature = hand_signed_callback(URL);
    let mut extended = callback_params();
    extended.push(("ErrorCode".to_owned(), "30003".to_owned()));

    assert!(!validate_signature(&token(), URL, &extended, &signature));
}

#[test]
fn another_url_invalidates_the_signature() {
    let signature = hand_signed_callback(URL);

    assert!(!validate_signature(
        &token(),
        "https://notify.example.com/v1/webhooks/twilio/status?x=1",
        &callback_params(),
        &signature
    ));
}

#[test]
fn a_missing_signature_is_invalid() {
    assert!(!validate_signature(&token(), URL, &callback_params(), ""));
}

#[test]
fn a_garbage_signature_is_invalid() {
    for garbage in [
        "not base64 at all!",
        "=====",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8",
        "\u{1F600}",
    ] {
        assert!(
            !validate_signature(&token(), URL, &callback_params(), garbage),
            "{garbage}"
        );
    }
}

#[test]
fn a_signature_over_the_url_with_port_443_is_valid_for_the_url_without_it() {
    let signature =
        hand_signed_callback("https://notify.example.com:443/v1/webhooks/twilio/status");

    assert!(validate_signature(
        &token(),
        URL,
        &callback_params(),
        &signature
    ));
}

#[test]
fn a_signature_over_the_url_without_port_is_valid_for_the_url_with_443() {
    let signature = hand_signed_callback(URL);

    assert!(validate_signature(
        &token(),
        "https://notify.example.com:443/v1/webhooks/twilio/status",
        &callback_params(),
        &signature
    ));
}

#[test]
fn http_urls_use_port_80_as_their_default() {
    let signature = hand_signed_callback("http://localhost:80/v1/webhooks/twilio/status");

    assert!(validate_signature(
        &token(),
        "http://localhost/v1/webhooks/twilio/status",
        &callback_params(),
        &signature
    ));
    assert!(!validate_signature(
        &token(),
        "http://localhost:443/v1/webhooks/twilio/status",
        &callback_params(),
        &signature
    ));
}

#[test]
fn the_query_string_is_part_of_the_signed_url() {
    let url = "https://notify.example.com/v1/webhooks/twilio/status?tenant=a&x=%20y";
    let signature = hand_signed_callback(url);

    assert!(validate_signature(
        &token(),
        url,
        &callback_params(),
        &signature
    ));
    assert!(validate_signature(
        &token(),
        "https://notify.example.com:443/v1/webhooks/twilio/status?tenant=a&x=%20y",
        &callback_params(),
        &signature
    ));
}

#[test]
fn params_are_sorted_by_name_not_by_position() {
    let params = params(&[("b", "1"), ("a", "2")]);
    let signature = hand_signature(&format!("{URL}a2b1"));

    assert!(validate_signature(&token(), URL, &params, &signature));
    assert!(!validate_signature(
        &token(),
        URL,
        &params,
        &hand_signature(&format!("{URL}b1a2"))
    ));
}

#[test]
fn no_params_signs_the_url_alone() {
    let signature = hand_signature(URL);

    assert!(validate_signature(&token(), URL, &[], &signature));
}

/// Fixed vectors: each expected signature was computed outside this code base, with Python's
/// `hmac`/`hashlib` and again with `openssl dgst -sha1 -hmac 0123456789abcdef0123456789abcdef
/// -binary | base64`, over the URL followed by the sorted `callback_params()`.
mod fixed_vectors {
    use super::*;

    #[test]
    fn a_plain_url() {
        assert!(validate_signature(
            &token(),
            URL,
            &callback_params(),
            "Pdt2zuekzQBrk1r3MBrjllSCJ94="
        ));
    }

    #[test]
    fn a_url_with_a_query_string() {
        let url = "https://notify.example.com/v1/webhooks/twilio/status?tenant=acme&region=eu";

        assert!(validate_signature(
            &token(),
            url,
            &callback_params(),
            "6+51mc6yGbqwSar/QVS6aQZXN8Q="
        ));
        // The query is signed: without it, or with another one, the signature fails.
        assert!(!validate_signature(
            &token(),
            URL,
            &callback_params(),
            "6+51mc6yGbqwSar/QVS6aQZXN8Q="
        ));
        assert!(!validate_signature(
            &token(),
            "https://notify.example.com/v1/webhooks/twilio/status?tenant=other&region=eu",
            &callback_params(),
            "6+51mc6yGbqwSar/QVS6aQZXN8Q="
        ));
    }

    #[test]
    fn a_url_with_a_port_other_than_the_default() {
        let url = "https://notify.example.com:8443/v1/webhooks/twilio/status";

        assert!(validate_signature(
            &token(),
            url,
            &callback_params(),
            "vKQSxw1DN6I4QNdt033ecIbdgR0="
        ));
        // Only the scheme's default port may be left out.
        assert!(!validate_signature(
            &token(),
            URL,
            &callback_params(),
            "vKQSxw1DN6I4QNdt033ecIbdgR0="
        ));
    }

    #[test]
    fn a_url_signed_with_its_default_port_validates_with_and_without_it() {
        for url in [
            URL,
            "https://notify.example.com:443/v1/webhooks/twilio/status",
        ] {
            assert!(
                validate_signature(
                    &token(),
                    url,
                    &callback_params(),
                    "LkK+T/PQxqBtdsSQ9/kpcqNWbkY="
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn an_undelivered_callback_with_an_error_code() {
        let mut params = callback_params();
        for (name, value) in &mut params {
            if name == "MessageStatus" || name == "SmsStatus" {
                *value = "undelivered".to_owned();
            }
        }
        params.push(("ErrorCode".to_owned(), "30003".to_owned()));

        assert!(validate_signature(
            &token(),
            URL,
            &params,
            "hTsYHrxICYp15jpw4BXwdBm8P4I="
        ));
    }
}
