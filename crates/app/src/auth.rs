//! API keys: who is calling. Each key has a name, and only the name ever appears in logs,
//! metrics, reports and stored messages.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone)]
pub struct ApiKeys {
    keys: Vec<(String, SecretString)>,
}

/// Shortest key accepted from configuration: guessing must be hopeless.
const MIN_KEY_LEN: usize = 16;

impl ApiKeys {
    /// `name:key` pairs, comma-separated (`API_KEYS`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys: Vec<(String, SecretString)> = Vec::new();
        for (index, pair) in text.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            let Some((name, key)) = pair.split_once(':') else {
                return Err(format!("entry {position} is not name:key"));
            };
            let (name, key) = (name.trim(), key.trim());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "entry {position}: a name is letters, digits, `-`, `_` or `.`"
                ));
            }
            if key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "the key of `{name}` is shorter than {MIN_KEY_LEN} characters"
                ));
            }
            if keys.iter().any(|(existing, _)| existing == name) {
                return Err(format!("the name `{name}` appears twice"));
            }
            keys.push((name.to_owned(), SecretString::from(key.to_owned())));
        }
        Ok(Self { keys })
    }

    /// One random key named `default`, for a run with no configuration.
    pub fn generate() -> Self {
        Self {
            keys: vec![(
                "default".to_owned(),
                SecretString::from(crate::codes::random_token(32)),
            )],
        }
    }

    /// The name of the key `presented` matches. Every key is compared, in constant time, so
    /// the answer's timing says nothing about how close a guess was or which key matched.
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, key) in &self.keys {
            if bool::from(key.expose_secret().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// The generated key of a no-configuration run, to print once.
    pub fn first_key(&self) -> Option<&SecretString> {
        self.keys.first().map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_value_and_answer_with_their_name() {
        let keys = ApiKeys::parse("auth:0123456789abcdef, billing:fedcba9876543210").unwrap();
        assert_eq!(keys.authenticate("0123456789abcdef"), Some("auth"));
        assert_eq!(keys.authenticate("fedcba9876543210"), Some("billing"));
        assert_eq!(keys.authenticate("0123456789abcdeX"), None);
        assert_eq!(keys.authenticate(""), None);
    }

    #[test]
    fn malformed_key_lists_are_refused_with_a_reason() {
        assert!(ApiKeys::parse("justakey").unwrap_err().contains("name:key"));
        assert!(ApiKeys::parse("a:short").unwrap_err().contains("shorter"));
        assert!(ApiKeys::parse("a:0123456789abcdef,a:0123456789abcdeg")
            .unwrap_err()
            .contains("twice"));
        assert!(ApiKeys::parse("a b:0123456789abcdef").is_err());
    }

    #[test]
    fn a_generated_key_authenticates_as_default() {
        let keys = ApiKeys::generate();
        let key = keys.first_key().unwrap().expose_secret().to_owned();
        assert!(key.len() >= 32);
        assert_eq!(keys.authenticate(&key), Some("default"));
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let keys = ApiKeys::parse("auth:0123456789abcdef").unwrap();
        assert!(!format!("{keys:?}").contains("0123456789abcdef"));
    }
}
