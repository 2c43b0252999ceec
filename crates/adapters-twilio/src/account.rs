//! The credentials check: one `GET` of the account, which answers only if the credentials
//! work, used by readiness and the operator CLI.

use ports::ProviderError;

use crate::provider::{read_error, TwilioSmsProvider};
use crate::wire::AccountResource;

/// The account the credentials opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioAccount {
    pub sid: String,
    pub friendly_name: Option<String>,
}

/// Why the credentials check did not pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CredentialsError {
    /// Twilio refused the credentials (401, code 20003) or does not know the account (404):
    /// only a configuration change helps. Keeps Twilio's status, code and message.
    #[error("twilio refused the credentials: {0}")]
    Rejected(ProviderError),
    /// The credentials work but the account is `suspended` or `closed`: it cannot send.
    #[error("the twilio account is {0}, not active")]
    AccountNotActive(String),
    /// Twilio did not answer, or answered with a failure on its side: ask again later.
    #[error("twilio could not be asked: {0}")]
    Unavailable(ProviderError),
}

impl TwilioSmsProvider {
    /// `GET /2010-04-01/Accounts/{AccountSid}.json` with the configured credentials: whether
    /// they work and the account can send. Never retries.
    ///
    /// # Errors
    /// [`CredentialsError`] saying whether the configuration is wrong, the account inactive, or
    /// Twilio unreachable.
    #[tracing::instrument(name = "twilio_check_credentials", skip_all)]
    pub async fn check_credentials(&self) -> Result<TwilioAccount, CredentialsError> {
        let response = self
            .get(self.account_url())
            .await
            .map_err(CredentialsError::Unavailable)?;
        let status = response.status();
        if !status.is_success() {
            let error = read_error(response).await;
            return Err(if error.is_retryable() {
                CredentialsError::Unavailable(error)
            } else {
                CredentialsError::Rejected(error)
            });
        }
        let unreadable = || {
            CredentialsError::Unavailable(ProviderError {
                provider: "twilio",
                kind: ports::ProviderErrorKind::Retryable,
                http_status: Some(status.as_u16()),
                code: None,
                message: format!("twilio answered {status} without a readable account"),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            })
        };
        let body = response.bytes().await.map_err(|_| unreadable())?;
        // Only the fields below are read: the account resource also carries the auth token.
        let account: AccountResource = serde_json::from_slice(&body).map_err(|_| unreadable())?;
        match account.status.as_deref() {
            Some("active") => Ok(TwilioAccount {
                sid: account.sid.unwrap_or_else(|| self.account_sid().to_owned()),
                friendly_name: account.friendly_name,
            }),
            Some(other) => Err(CredentialsError::AccountNotActive(other.to_owned())),
            None => Err(unreadable()),
        }
    }
}
