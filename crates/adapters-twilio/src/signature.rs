//! The `X-Twilio-Signature` check on status callbacks, computed the way Twilio's helper
//! libraries compute it.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::{Choice, ConstantTimeEq};

type HmacSha1 = Hmac<Sha1>;

/// Whether `signature` (the `X-Twilio-Signature` header) proves that Twilio sent these form
/// parameters to `url`.
///
/// The signed text is the full URL (query string included) followed by every POST parameter
/// sorted by name, each name immediately followed by its value; the signature is the base64 of
/// its HMAC-SHA1 under the auth token. `url` must be the URL Twilio called, as configured (our
/// `StatusCallback`), not one rebuilt from a proxied request. As in the helper libraries, the URL
/// is also tried with its port removed, or with the scheme's default port added (`:443` for
/// https, `:80` for http) when it has none, because Twilio's signing is not consistent about
/// ports. Comparison is in constant time; an empty or malformed signature is simply invalid.
pub fn validate_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    if signature.is_empty() {
        return false;
    }
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // By name, then by value for a repeated name; a repeated pair counts once (as the helpers
    // treat repeated form values).
    sorted.sort();
    sorted.dedup();
    let mut valid = Choice::from(0);
    for candidate in [Some(url.to_owned()), with_port_toggled(url)]
        .into_iter()
        .flatten()
    {
        let Some(expected) = compute(auth_token, &candidate, &sorted) else {
            return false;
        };
        valid |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    valid.into()
}

fn compute(auth_token: &SecretString, url: &str, sorted: &[&(String, String)]) -> Option<String> {
    let mut mac = HmacSha1::new_from_slice(auth_token.expose_secret().as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// The same URL with its explicit port removed, or with the scheme's default port added when it
/// has none. Works on the text, because a URL parser would normalise other parts of it too.
/// `None` when the URL has no recognisable authority or the scheme has no default port.
fn with_port_toggled(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = url[..scheme_end].to_ascii_lowercase();
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |offset| authority_start + offset);
    let authority = &url[authority_start..authority_end];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_and_port = &authority[host_start..];
    // After an IPv6 literal's closing bracket, or anywhere in a name or IPv4 address.
    let search_from = host_and_port.rfind(']').unwrap_or(0);
    let port_colon = host_and_port[search_from..]
        .rfind(':')
        .map(|colon| search_from + colon)
        .filter(|&colon| {
            host_and_port[colon + 1..]
                .chars()
                .all(|c| c.is_ascii_digit())
        });
    let insert_at = authority_start + host_start;
    match port_colon {
        Some(colon) => Some(format!(
            "{}{}",
            &url[..insert_at + colon],
            &url[authority_end..]
        )),
        None => {
            let default_port = match scheme.as_str() {
                "https" => "443",
                "http" => "80",
                _ => return None,
            };
            Some(format!(
                "{}:{default_port}{}",
                &url[..authority_end],
                &url[authority_end..]
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_port_toggled;

    #[test]
    fn a_default_port_is_added_when_there_is_none() {
        assert_eq!(
            with_port_toggled("https://example.com/hook?a=1").as_deref(),
            Some("https://example.com:443/hook?a=1")
        );
        assert_eq!(
            with_port_toggled("http://example.com").as_deref(),
            Some("http://example.com:80")
        );
    }

    #[test]
    fn an_explicit_port_is_removed() {
        assert_eq!(
            with_port_toggled("https://example.com:443/hook").as_deref(),
            Some("https://example.com/hook")
        );
        assert_eq!(
            with_port_toggled("http://user:pw@[::1]:8080/x").as_deref(),
            Some("http://user:pw@[::1]/x")
        );
    }

    #[test]
    fn an_ipv6_literal_is_not_mistaken_for_a_port() {
        assert_eq!(
            with_port_toggled("https://[::1]/x").as_deref(),
            Some("https://[::1]:443/x")
        );
    }

    #[test]
    fn text_without_an_authority_has_no_variant() {
        assert_eq!(with_port_toggled("not a url"), None);
        assert_eq!(with_port_toggled("ftp://example.com/x"), None);
    }
}
