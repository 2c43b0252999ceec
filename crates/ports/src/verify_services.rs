//! Twilio Verify's services (`VA...`) as the Twilio-compatible API keeps them: per Twilio
//! account, each with its friendly name and the code length its verifications use. In the database so that every instance serves the same services.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::CodeLength;
use uuid::Uuid;

use crate::StoreError;

/// One Verify service of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyService {
    pub id: Uuid,
    /// The Twilio account (`AC...`) it belongs to: no other account sees it.
    pub account_sid: String,
    /// The service's name as its client gave it (Twilio shows it in the code message).
    pub friendly_name: String,
    pub code_length: CodeLength,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The Verify services of every account.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails; [`StoreError::Corrupt`] when a stored
/// row does not read back.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait VerifyServiceStore: Send + Sync {
    /// Stores a new service.
    async fn create_service(&self, service: &VerifyService) -> Result<(), StoreError>;

    /// The service `id` of `account_sid`; `None` when it is another account's or there is none.
    async fn service(
        &self,
        account_sid: &str,
        id: Uuid,
    ) -> Result<Option<VerifyService>, StoreError>;

    /// A page of the account's services, oldest first: `limit` of them after skipping `offset`.
    async fn services(
        &self,
        account_sid: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<VerifyService>, StoreError>;

    /// Replaces the settings (friendly name, code length, `updated_at`) of the service of the
    /// same id and account: `false` when there is none.
    async fn update_service(&self, service: &VerifyService) -> Result<bool, StoreError>;

    /// Removes the service `id` of `account_sid`: `false` when there was none.
    async fn delete_service(&self, account_sid: &str, id: Uuid) -> Result<bool, StoreError>;
}
