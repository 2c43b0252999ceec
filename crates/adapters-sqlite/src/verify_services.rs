//! The Twilio-compatible API's Verify services on SQLite ([`ports::VerifyServiceStore`]):
//! single statements, each scoped to its account.

use async_trait::async_trait;
use ports::params::{self, Param};
use ports::{rows, StoreError, VerifyService, VerifyServiceStore};
use uuid::Uuid;

use crate::rows::{all, execute, optional, query};
use crate::SqliteStore;

const COLUMNS: &str = "id, account_sid, friendly_name, code_length, created_at, updated_at";

#[async_trait]
impl VerifyServiceStore for SqliteStore {
    async fn create_service(&self, service: &VerifyService) -> Result<(), StoreError> {
        let sql =
            format!("INSERT INTO verify_services ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
        execute(query(&sql, &params::verify_service(service)), &self.writer).await?;
        Ok(())
    }

    async fn service(
        &self,
        account_sid: &str,
        id: Uuid,
    ) -> Result<Option<VerifyService>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM verify_services WHERE id = $1 AND account_sid = $2");
        let found = query(&sql, &[Param::id(id), Param::text(account_sid)]);
        optional(found, &self.pool, rows::verify_service).await
    }

    async fn services(
        &self,
        account_sid: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<VerifyService>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM verify_services WHERE account_sid = $1 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        );
        let page = query(
            &sql,
            &[
                Param::text(account_sid),
                Param::count(limit),
                Param::count(offset),
            ],
        );
        all(page, &self.pool, rows::verify_service).await
    }

    async fn update_service(&self, service: &VerifyService) -> Result<bool, StoreError> {
        let update = query(
            "UPDATE verify_services SET friendly_name = $3, code_length = $4, updated_at = $5 \
             WHERE id = $1 AND account_sid = $2",
            &params::verify_service_settings(service),
        );
        Ok(execute(update, &self.writer).await? == 1)
    }

    async fn delete_service(&self, account_sid: &str, id: Uuid) -> Result<bool, StoreError> {
        let delete = query(
            "DELETE FROM verify_services WHERE id = $1 AND account_sid = $2",
            &[Param::id(id), Param::text(account_sid)],
        );
        Ok(execute(delete, &self.writer).await? == 1)
    }
}
