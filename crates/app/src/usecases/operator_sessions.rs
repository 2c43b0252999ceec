//! The operators' sessions of the dashboard: an admin key, presented once at its login form,
//! becomes a signed token the browser keeps in a cookie. The token is signed with a key derived
//! from the code pepper, which every instance of one database shares, so any instance accepts
//! it and nothing is stored: a session ends when it expires or when its key is no longer an
//! admin key. The cross-site request forgery tokens of its forms are derived from it too.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::usecases::codes::random_token;
use crate::usecases::Services;

/// How long a session lasts from its login: a working day, then the key is asked again.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(12);

/// An operator logged in to the dashboard with an admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSession {
    /// The admin key's name, recorded beside what the operator changes.
    pub name: String,
    pub expires_at: DateTime<Utc>,
    /// Random per login: what the session's form tokens are bound to.
    nonce: String,
}

/// Why a login was refused. The dashboard says no more than that to the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefusal {
    #[error("that is not an API key of this service")]
    UnknownKey,
    #[error("that is a client key: the dashboard takes admin keys (ADMIN_API_KEYS) only")]
    NotAdmin,
}

/// The key sessions are signed with: HMAC of a fixed label under the pepper, so that it is
/// the same on every instance and a signature is useless as a code hash (and the reverse).
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn derive(hasher: &crate::usecases::codes::CodeHasher) -> Self {
        Self(hasher.derive_key("sms-notify dashboard sessions v1"))
    }

    fn sign(&self, parts: &[&str]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            // Lengths first, so that no two lists of parts sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex(&mac.finalize().into_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn same(left: &str, right: &str) -> bool {
    bool::from(left.as_bytes().ct_eq(right.as_bytes()))
}

impl Services {
    /// A session for the admin key `presented`, with its token for the cookie.
    pub fn open_operator_session(
        &self,
        presented: &str,
    ) -> Result<(OperatorSession, String), LoginRefusal> {
        let key = self
            .authenticate(presented.trim())
            .ok_or(LoginRefusal::UnknownKey)?;
        if !key.is_admin() {
            return Err(LoginRefusal::NotAdmin);
        }
        let session = OperatorSession {
            name: key.name().to_owned(),
            expires_at: self.now() + SESSION_LIFETIME,
            nonce: random_token(16),
        };
        let expires = session.expires_at.timestamp().to_string();
        let signature =
            self.session_key
                .sign(&["session", &session.name, &expires, &session.nonce]);
        // Names are letters, digits, `-`, `_` and `.`: `:` never occurs in one.
        let token = format!("{}:{expires}:{}:{signature}", session.name, session.nonce);
        tracing::info!(admin = session.name, "dashboard login");
        Ok((session, token))
    }

    /// The session `token` is, if its signature holds, it has not expired, and its key is
    /// still an admin key.
    pub fn operator_session(&self, token: &str) -> Option<OperatorSession> {
        let mut parts = token.rsplitn(4, ':');
        let (signature, nonce, expires, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expected = self.session_key.sign(&["session", name, expires, nonce]);
        if !same(signature, &expected) {
            return None;
        }
        let expires_at = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        if expires_at <= self.now() {
            return None;
        }
        self.api_keys.named(name).filter(|key| key.is_admin())?;
        Some(OperatorSession {
            name: name.to_owned(),
            expires_at,
            nonce: nonce.to_owned(),
        })
    }

    /// The token each state-changing form of `session` carries.
    pub fn operator_form_token(&self, session: &OperatorSession) -> String {
        self.session_key.sign(&["form", &session.nonce])
    }

    /// Whether `presented` is `session`'s form token.
    pub fn operator_form_token_holds(&self, session: &OperatorSession, presented: &str) -> bool {
        same(presented, &self.operator_form_token(session))
    }

    /// A fresh login form: the random value its browser keeps in a cookie, and the token the
    /// form carries, which only that value matches (a login forged from another site carries
    /// neither).
    pub fn login_form(&self) -> (String, String) {
        let nonce = random_token(16);
        let token = self.session_key.sign(&["login", &nonce]);
        (nonce, token)
    }

    /// Whether `presented` is the login form token of the browser's `nonce`.
    pub fn login_form_holds(&self, nonce: &str, presented: &str) -> bool {
        same(presented, &self.session_key.sign(&["login", nonce]))
    }
}
