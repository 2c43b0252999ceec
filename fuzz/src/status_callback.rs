//! Twilio's status callback as `adapters_twilio` reads it: `validate_signature` on any URL,
//! form and `X-Twilio-Signature`, and `parse_status_callback` on any form.
//!
//! An input is the URL Twilio called on its first line, the signature header on its second and
//! the form body after them (a missing line is empty).

use adapters_twilio::{parse_status_callback, validate_signature};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha1::Sha1;

pub const AUTH_TOKEN: &str = "fuzz-auth-token-0123456789abcdef";

pub fn run(data: &[u8]) {
    let mut lines = data.splitn(3, |&byte| byte == b'\n');
    let url = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let signature = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let body = lines.next().unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let token = SecretString::from(AUTH_TOKEN);

    let _ = validate_signature(&token, &url, &params, &signature);
    // Whatever the URL and the form, Twilio's own signature of them is accepted.
    assert!(
        validate_signature(&token, &url, &params, &twilio_signature(&url, &params)),
        "Twilio's signature of {url:?} and {params:?} is refused"
    );

    let received_at = DateTime::<Utc>::UNIX_EPOCH;
    if let Ok(callback) = parse_status_callback(&params, received_at) {
        assert!(
            !callback.message_sid.is_empty() && callback.message_sid.trim() == callback.message_sid,
            "message sid {:?} from {params:?}",
            callback.message_sid
        );
        assert_eq!(callback.event.received_at, received_at);
    }
}

/// `X-Twilio-Signature` for `params` posted to `url`, computed as Twilio documents it
/// (independently of the adapter): the base64 HMAC-SHA1 of the URL followed by each parameter's
/// name and value, sorted.
pub fn twilio_signature(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run_clean() {
        crate::run_seeds("status_callback", super::run);
    }
}
