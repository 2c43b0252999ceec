//! API keys: who is calling. Each key has a name, and only the name ever appears in logs,
//! metrics, reports and stored messages. A client key (`API_KEYS`) sees its own messages; an
//! admin key (`ADMIN_API_KEYS`) sees every key's.

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone)]
pub struct ApiKey {
    name: String,
    key: SecretString,
    admin: bool,
}

impl ApiKey {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the key may see and act on every API key's messages, not only its own.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

/// The name of the key a run with no `API_KEYS` nor `ADMIN_API_KEYS` makes for itself: what
/// its messages and verifications are recorded under.
pub const DEFAULT_KEY_NAME: &str = "default";

/// Shortest key accepted from configuration: guessing must be hopeless.
const MIN_KEY_LEN: usize = 16;

impl ApiKeys {
    /// Client keys: `name:key` pairs, comma-separated (`API_KEYS`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Self::default();
        keys.add(text, false)?;
        Ok(keys)
    }

    /// Admin keys, in the same format (`ADMIN_API_KEYS`). Names and keys must differ from
    /// every key already held.
    pub fn add_admins(mut self, text: &str) -> Result<Self, String> {
        self.add(text, true)?;
        Ok(self)
    }

    fn add(&mut self, text: &str, admin: bool) -> Result<(), String> {
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
            if self.keys.iter().any(|existing| existing.name == name) {
                return Err(format!("the name `{name}` appears twice"));
            }
            // One key, two names: which one (and whether admin) would depend on the order.
            if let Some(existing) = self
                .keys
                .iter()
                .find(|existing| existing.key.expose_secret() == key)
            {
                return Err(format!("`{name}` has the same key as `{}`", existing.name));
            }
            self.keys.push(ApiKey {
                name: name.to_owned(),
                key: SecretString::from(key.to_owned()),
                admin,
            });
        }
        Ok(())
    }

    /// One random admin key named [`DEFAULT_KEY_NAME`], for a run with no configuration: its
    /// operator is the only client, and sees everything.
    pub fn generate() -> Self {
        Self::default_admin(SecretString::from(crate::usecases::codes::random_token(32)))
    }

    /// `key` as the one admin key named [`DEFAULT_KEY_NAME`]: the default run's, kept beside
    /// its database.
    pub fn default_admin(key: SecretString) -> Self {
        Self {
            keys: vec![ApiKey {
                name: DEFAULT_KEY_NAME.to_owned(),
                key,
                admin: true,
            }],
        }
    }

    /// The key `presented` matches. Every key is compared, in constant time, so the answer's
    /// timing says nothing about how close a guess was or which key matched.
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        let mut found = None;
        for key in &self.keys {
            if bool::from(
                key.key
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(presented.as_bytes()),
            ) {
                found = Some(key);
            }
        }
        found
    }

    /// Every key, in configuration order (client keys first).
    pub fn all(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.iter()
    }

    /// The key named `name`, if there is one.
    pub fn named(&self, name: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|key| key.name == name)
    }

    /// The generated key of a no-configuration run, to print once.
    pub fn first_key(&self) -> Option<&SecretString> {
        self.keys.first().map(|key| &key.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_value_and_answer_with_their_name() {
        let keys = ApiKeys::parse("auth:0123456789abcdef, billing:fedcba9876543210").unwrap();
        let name = |presented| keys.authenticate(presented).map(ApiKey::name);
        assert_eq!(name("0123456789abcdef"), Some("auth"));
        assert_eq!(name("fedcba9876543210"), Some("billing"));
        assert_eq!(name("0123456789abcdeX"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn admin_keys_are_told_from_client_keys_and_never_share_a_name_or_key() {
        let keys = ApiKeys::parse("auth:0123456789abcdef")
            .unwrap()
            .add_admins("ops:fedcba9876543210")
            .unwrap();
        let admin = |presented| keys.authenticate(presented).map(ApiKey::is_admin);
        assert_eq!(admin("0123456789abcdef"), Some(false));
        assert_eq!(admin("fedcba9876543210"), Some(true));

        let clients = ApiKeys::parse("auth:0123456789abcdef").unwrap();
        let same_name = clients.clone().add_admins("auth:fedcba9876543210");
        assert!(same_name.unwrap_err().contains("twice"));
        let same_key = clients.add_admins("ops:0123456789abcdef");
        assert!(same_key.unwrap_err().contains("same key as `auth`"));
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
    fn a_generated_key_authenticates_as_default_an_admin() {
        let keys = ApiKeys::generate();
        let key = keys.first_key().unwrap().expose_secret().to_owned();
        assert!(key.len() >= 32);
        let default = keys.authenticate(&key).unwrap();
        assert_eq!(default.name(), "default");
        assert!(default.is_admin());
    }

    #[test]
    fn debug_output_never_shows_a_key() {
        let keys = ApiKeys::parse("auth:0123456789abcdef").unwrap();
        assert!(!format!("{keys:?}").contains("0123456789abcdef"));
    }
}
