//! What a code's text carries besides the code: the brand it names, and the lines that let a
//! phone or a browser fill the code in by itself (autofill).
//!
//! Each has a length limit because the texts are written to fit one SMS segment: a longer
//! brand or domain would make every code cost two.

use std::fmt;

/// The most characters a brand may have: the built-in texts fit one segment with it.
pub const MAX_BRAND_CHARS: usize = 20;
/// The most characters an autofill domain may have: the GSM-7 texts still fit one segment
/// with the origin-bound line, the UCS-2 texts two.
pub const MAX_APP_DOMAIN_CHARS: usize = 20;
/// An Android app's hash for the SMS Retriever API: 11 characters of base64.
const APP_HASH_CHARS: usize = 11;

/// The name the code texts give the service (`Smarter Firms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrandError {
    #[error("a brand must not be empty")]
    Empty,
    #[error("a brand has at most {MAX_BRAND_CHARS} characters, so that a code still fits one SMS")]
    TooLong,
    #[error("a brand is one line of printable characters")]
    NotPrintable,
}

impl Brand {
    pub fn parse(text: &str) -> Result<Self, BrandError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BrandError::Empty);
        }
        if text.chars().count() > MAX_BRAND_CHARS {
            return Err(BrandError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(BrandError::NotPrintable);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Brand {
    fn default() -> Self {
        Self("Smarter Firms".to_owned())
    }
}

impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The web origin's host a code is bound to (`example.com`): the `@example.com #123456` line
/// that browsers (WebOTP), iOS and Android read to fill the code in on that site or its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDomain(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppDomainError {
    #[error("expected a host name such as example.com (lowercase letters, digits, hyphens and dots, no scheme or path)")]
    NotAHostName,
    #[error("a domain has at most {MAX_APP_DOMAIN_CHARS} characters, so that a code with its autofill line still fits one SMS")]
    TooLong,
}

impl AppDomain {
    pub fn parse(text: &str) -> Result<Self, AppDomainError> {
        let host = text.trim().to_ascii_lowercase();
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        // A dot at least: a browser binds codes to a site's domain, never to `localhost`.
        let labels: Vec<&str> = host.split('.').collect();
        let top_level_ok = labels
            .last()
            .is_some_and(|top| top.chars().any(|c| c.is_ascii_lowercase()));
        if labels.len() < 2 || !labels.iter().all(|label| label_ok(label)) || !top_level_ok {
            return Err(AppDomainError::NotAHostName);
        }
        if host.len() > MAX_APP_DOMAIN_CHARS {
            return Err(AppDomainError::TooLong);
        }
        Ok(Self(host))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Android app's 11-character hash, which the SMS Retriever API finds in a message to hand
/// it to that app without asking the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHash(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an app hash is the 11 characters of base64 (letters, digits, `+` and `/`) that Android's SMS Retriever API computes for the app")]
pub struct AppHashError;

impl AppHash {
    pub fn parse(text: &str) -> Result<Self, AppHashError> {
        let valid = text.chars().count() == APP_HASH_CHARS
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
        valid.then(|| Self(text.to_owned())).ok_or(AppHashError)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `text` with the autofill lines after it: the app hash, then the origin-bound line, which
/// must be the last (`Your code is 123456.\nFA+9qCX9VSu\n@example.com #123456`). Without
/// either, `text` as it is.
pub fn with_autofill(
    text: &str,
    code: &str,
    app_hash: Option<&AppHash>,
    domain: Option<&AppDomain>,
) -> String {
    let mut message = text.to_owned();
    if let Some(app_hash) = app_hash {
        message.push('\n');
        message.push_str(app_hash.as_str());
    }
    if let Some(domain) = domain {
        message.push_str(&format!("\n@{} #{code}", domain.as_str()));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_brand_is_one_short_line() {
        assert_eq!(Brand::parse(" Acme ").unwrap().as_str(), "Acme");
        assert_eq!(Brand::parse(&"a".repeat(20)).unwrap().as_str().len(), 20);
        assert_eq!(Brand::parse(&"a".repeat(21)), Err(BrandError::TooLong));
        assert_eq!(Brand::parse("  "), Err(BrandError::Empty));
        assert_eq!(Brand::parse("Ac\nme"), Err(BrandError::NotPrintable));
        assert_eq!(Brand::default().as_str(), "Smarter Firms");
    }

    #[test]
    fn an_app_domain_is_a_host_name_of_at_most_20_characters() {
        assert_eq!(
            AppDomain::parse("Example.COM").unwrap().as_str(),
            "example.com"
        );
        assert!(AppDomain::parse("a-b.example.co.uk").is_ok());
        for bad in [
            "https://example.com",
            "example.com/path",
            "localhost",
            "-a.com",
            "a..com",
            "exa mple.com",
            "example.123",
        ] {
            assert_eq!(
                AppDomain::parse(bad),
                Err(AppDomainError::NotAHostName),
                "{bad}"
            );
        }
        assert_eq!(
            AppDomain::parse("login.smarterfirms.com"),
            Err(AppDomainError::TooLong)
        );
    }

    #[test]
    fn an_app_hash_is_11_base64_characters() {
        assert!(AppHash::parse("FA+9qCX9VSu").is_ok());
        assert!(AppHash::parse("abc/DEF1234").is_ok());
        for bad in [
            "FA+9qCX9VS",
            "FA+9qCX9VSuu",
            "FA-9qCX9VSu",
            "FA+9qCX9VS=",
            "FA+9qCX9VSü",
        ] {
            assert_eq!(AppHash::parse(bad), Err(AppHashError), "{bad}");
        }
    }

    #[test]
    fn the_origin_bound_line_is_last_with_the_app_hash_before_it() {
        let domain = AppDomain::parse("example.com").unwrap();
        let hash = AppHash::parse("FA+9qCX9VSu").unwrap();
        assert_eq!(
            with_autofill("Code 123456.", "123456", Some(&hash), Some(&domain)),
            "Code 123456.\nFA+9qCX9VSu\n@example.com #123456"
        );
        assert_eq!(
            with_autofill("Code 123456.", "123456", None, Some(&domain)),
            "Code 123456.\n@example.com #123456"
        );
        assert_eq!(
            with_autofill("Code 123456.", "123456", Some(&hash), None),
            "Code 123456.\nFA+9qCX9VSu"
        );
        assert_eq!(
            with_autofill("Code 123456.", "123456", None, None),
            "Code 123456."
        );
    }
}
