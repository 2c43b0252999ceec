//! What only the Twilio-compatible Verify API (`/v2`, `http::twilio_verify`) needs beside the
//! verification use cases it shares with `/v1`: the Twilio accounts its clients authenticate
//! as (`VERIFY_COMPAT_ACCOUNTS`), each standing for one of this service's API keys, and the
//! Verify services (`VA...`) of each account, whose settings its verifications use.

use domain::{CodeLength, Verification, VerificationId, VerificationStatus};
use ports::{StoreError, VerifyService};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use url::Url;
use uuid::Uuid;

use crate::observability::metrics::VerificationEvent;
use crate::usecases::auth::ApiKeys;
use crate::usecases::verify::CancelError;
use crate::usecases::Services;

/// A Twilio account SID: `AC` and 32 hexadecimal digits, as Twilio's SDKs insist.
pub fn is_account_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("AC") && text[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A Twilio account a client of `/v2` authenticates as (HTTP Basic, SID and auth token), and
/// the API key whose tenant it is: its limits, reports and verifications are that key's.
#[derive(Debug, Clone)]
pub struct TwilioAccount {
    sid: String,
    token: SecretString,
    api_key: String,
    api_key_is_admin: bool,
}

impl TwilioAccount {
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The name of the API key this account acts as.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn api_key_is_admin(&self) -> bool {
        self.api_key_is_admin
    }
}

/// Shortest auth token accepted from configuration (Twilio's are 32 characters).
const MIN_TOKEN_LEN: usize = 16;

/// The accounts of `VERIFY_COMPAT_ACCOUNTS`; none turns `/v2` off.
#[derive(Debug, Clone, Default)]
pub struct TwilioAccounts {
    accounts: Vec<TwilioAccount>,
}

impl TwilioAccounts {
    /// `name:AC...:token` entries, comma-separated; every `name` is one of `api_keys`.
    pub fn parse(text: &str, api_keys: &ApiKeys) -> Result<Self, String> {
        let mut accounts: Vec<TwilioAccount> = Vec::new();
        for (index, entry) in text.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            let mut parts = entry.splitn(3, ':').map(str::trim);
            let (Some(name), Some(sid), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("entry {position} is not name:AC...:token"));
            };
            let Some(api_key) = api_keys.named(name) else {
                return Err(format!(
                    "entry {position}: `{name}` is not the name of an API key (API_KEYS or ADMIN_API_KEYS)"
                ));
            };
            if !is_account_sid(sid) {
                return Err(format!(
                    "entry {position}: an account SID is AC followed by 32 hexadecimal digits"
                ));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "entry {position}: the auth token is shorter than {MIN_TOKEN_LEN} characters"
                ));
            }
            if accounts.iter().any(|account| account.sid == sid) {
                return Err(format!("the account {sid} appears twice"));
            }
            accounts.push(TwilioAccount {
                sid: sid.to_owned(),
                token: SecretString::from(token.to_owned()),
                api_key: api_key.name().to_owned(),
                api_key_is_admin: api_key.is_admin(),
            });
        }
        Ok(Self { accounts })
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The account `sid` and `token` are. Every account is compared, in constant time, so the
    /// answer's timing says nothing about how close a guess was.
    pub fn authenticate(&self, sid: &str, token: &str) -> Option<&TwilioAccount> {
        let mut found = None;
        for account in &self.accounts {
            let sid_matches = account.sid.as_bytes().ct_eq(sid.as_bytes());
            let token_matches = account
                .token
                .expose_secret()
                .as_bytes()
                .ct_eq(token.as_bytes());
            if bool::from(sid_matches & token_matches) {
                found = Some(account);
            }
        }
        found
    }
}

/// The Twilio-compatible API's configuration: its accounts, and the address its resources'
/// `url`s start with (`PUBLIC_BASE_URL`; without it, the host each request names).
#[derive(Debug, Clone, Default)]
pub struct VerifyCompat {
    pub accounts: TwilioAccounts,
    pub public_base_url: Option<Url>,
}

/// A Verify service's settings as a request gives them; what it leaves out is kept (or, for a
/// new service, defaulted).
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    pub friendly_name: Option<String>,
    pub code_length: Option<CodeLength>,
}

/// Longest friendly name, as Twilio Verify has it.
pub const MAX_FRIENDLY_NAME: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("a friendly name is 1 to {MAX_FRIENDLY_NAME} letters, digits, spaces, `-` or `_`")]
    InvalidFriendlyName,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The friendly name a code message shows: Twilio allows letters, digits, spaces, dashes and
/// underscores, and no links or phone numbers, which a phishing text would carry.
fn checked_friendly_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_FRIENDLY_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_');
    valid
        .then(|| name.to_owned())
        .ok_or(ServiceError::InvalidFriendlyName)
}

impl Services {
    /// The Twilio-compatible API's accounts and base address.
    pub fn verify_compat(&self) -> &VerifyCompat {
        &self.verify_compat
    }

    /// Creates a Verify service of `account_sid`; its code length defaults to the service's
    /// (`VERIFY_CODE_LENGTH`).
    pub async fn create_verify_service(
        &self,
        account_sid: &str,
        friendly_name: &str,
        code_length: Option<CodeLength>,
    ) -> Result<VerifyService, ServiceError> {
        let now = self.clock.now();
        let service = VerifyService {
            id: Uuid::now_v7(),
            account_sid: account_sid.to_owned(),
            friendly_name: checked_friendly_name(friendly_name)?,
            code_length: code_length.unwrap_or(self.verification_policy.code_length),
            created_at: now,
            updated_at: now,
        };
        self.verify_services.create_service(&service).await?;
        tracing::info!(service_id = %service.id, "verify service created");
        Ok(service)
    }

    pub async fn verify_service(
        &self,
        account_sid: &str,
        id: Uuid,
    ) -> Result<Option<VerifyService>, StoreError> {
        self.verify_services.service(account_sid, id).await
    }

    /// A page of the account's services, oldest first.
    pub async fn verify_services(
        &self,
        account_sid: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<VerifyService>, StoreError> {
        self.verify_services
            .services(account_sid, offset, limit)
            .await
    }

    /// Changes what `settings` gives of the service; `None` when the account has no such
    /// service.
    pub async fn update_verify_service(
        &self,
        account_sid: &str,
        id: Uuid,
        settings: ServiceSettings,
    ) -> Result<Option<VerifyService>, ServiceError> {
        let friendly_name = settings
            .friendly_name
            .as_deref()
            .map(checked_friendly_name)
            .transpose()?;
        let Some(current) = self.verify_services.service(account_sid, id).await? else {
            return Ok(None);
        };
        let updated = VerifyService {
            friendly_name: friendly_name.unwrap_or(current.friendly_name),
            code_length: settings.code_length.unwrap_or(current.code_length),
            updated_at: self.clock.now().max(current.created_at),
            ..current
        };
        Ok(self
            .verify_services
            .update_service(&updated)
            .await?
            .then_some(updated))
    }

    /// Approves a pending verification without a code, as Twilio Verify's update with
    /// `Status=approved` does: the client has verified the user some other way. Its codes
    /// approve nothing more and those not yet sent never will be. Counted as an approval.
    pub async fn approve_verification(
        &self,
        api_key: &str,
        id: VerificationId,
    ) -> Result<Verification, CancelError> {
        let now = self.clock.now();
        let verification = self
            .verification(api_key, id)
            .await?
            .ok_or(CancelError::NotFound)?;
        let seen = verification.status_at(now);
        if seen != VerificationStatus::Pending {
            return Err(CancelError::Ended(seen));
        }
        if !self
            .verifications
            .conclude(id, VerificationStatus::Approved, now)
            .await?
        {
            // Ended concurrently: checked, canceled or expired first.
            let latest = self
                .verification(api_key, id)
                .await?
                .ok_or(CancelError::NotFound)?;
            return Err(CancelError::Ended(latest.status_at(now)));
        }
        self.metrics.verification(VerificationEvent::Approved);
        tracing::info!(verification_id = %id, "verification approved by its client");
        Ok(Verification {
            status: VerificationStatus::Approved,
            ..verification
        })
    }

    /// Removes the service: `false` when the account had no such service.
    pub async fn delete_verify_service(
        &self,
        account_sid: &str,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        self.verify_services.delete_service(account_sid, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys::parse("auth:0123456789abcdef").unwrap()
    }

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn an_account_authenticates_with_its_sid_and_token_as_its_api_key() {
        let accounts =
            TwilioAccounts::parse(&format!("auth:{SID}:token-0123456789abcdef"), &keys()).unwrap();
        let account = accounts
            .authenticate(SID, "token-0123456789abcdef")
            .unwrap();
        assert_eq!(account.api_key(), "auth");
        assert_eq!(account.sid(), SID);
        assert!(accounts
            .authenticate(SID, "token-0123456789abcdeX")
            .is_none());
        assert!(accounts
            .authenticate(
                "ACffffffffffffffffffffffffffffffff",
                "token-0123456789abcdef"
            )
            .is_none());
        assert!(accounts.authenticate(SID, "").is_none());
    }

    #[test]
    fn malformed_accounts_are_refused_with_a_reason() {
        let refused = |text: &str| TwilioAccounts::parse(text, &keys()).unwrap_err();
        assert!(refused("auth:token").contains("name:AC...:token"));
        assert!(refused(&format!("billing:{SID}:token-0123456789abcdef")).contains("`billing`"));
        assert!(refused("auth:AC0123:token-0123456789abcdef").contains("32 hexadecimal"));
        assert!(
            refused("auth:SK0123456789abcdef0123456789abcdef:token-0123456789abcdef")
                .contains("AC followed")
        );
        assert!(refused(&format!("auth:{SID}:short")).contains("shorter"));
        assert!(refused(&format!(
            "auth:{SID}:token-0123456789abcdef,auth:{SID}:token-fedcba9876543210"
        ))
        .contains("twice"));
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let accounts =
            TwilioAccounts::parse(&format!("auth:{SID}:token-0123456789abcdef"), &keys()).unwrap();
        assert!(!format!("{accounts:?}").contains("token-0123456789abcdef"));
    }

    #[test]
    fn friendly_names_are_short_and_carry_no_link_or_symbol() {
        assert_eq!(checked_friendly_name(" Acme Bank ").unwrap(), "Acme Bank");
        assert_eq!(
            checked_friendly_name("Café-Crème_2").unwrap(),
            "Café-Crème_2"
        );
        for refused in [
            "",
            "   ",
            "acme.example/login",
            "Call +1 555 0100!",
            &"x".repeat(31),
        ] {
            assert!(
                matches!(
                    checked_friendly_name(refused),
                    Err(ServiceError::InvalidFriendlyName)
                ),
                "{refused:?}"
            );
        }
    }
}
