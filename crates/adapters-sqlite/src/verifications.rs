//! Verifications and their code hashes on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CodeHash, Message, NewMessage, PhoneNumber, Verification, VerificationId, VerificationStatus,
};
use ports::{StoreError, VerificationFilter, VerificationStore};
use sqlx::SqliteConnection;
use tracing::instrument;

use crate::messages::{insert_code_message, BEGIN_WRITE};
use crate::rows::{code_hashes, micros, store_error, VerificationRow};
use crate::SqliteStore;

async fn insert_code(
    connection: &mut SqliteConnection,
    id: VerificationId,
    code: &CodeHash,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_codes (verification_id, code_hash, created_at) \
         VALUES ($1, $2, $3)",
    )
    .bind(id.as_uuid().hyphenated())
    .bind(code.as_bytes())
    .bind(micros(now))
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl VerificationStore for SqliteStore {
    /// The message is stored as the carrier of this verification's code whatever its
    /// `verification_id` says, so that its body is forgotten once it has been sent.
    #[instrument(skip_all, fields(verification_id = %verification.id))]
    async fn create(
        &self,
        verification: &Verification,
        code: CodeHash,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        let mut transaction = self
            .writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(store_error)?;
        sqlx::query(
            r#"INSERT INTO verifications (id, "to", channel, api_key, status, check_count,
                   max_checks, send_count, max_sends, expires_at, last_sent_at, created_at,
                   updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"#,
        )
        .bind(verification.id.as_uuid().hyphenated())
        .bind(verification.to.as_str())
        .bind(verification.channel.as_str())
        .bind(verification.api_key.as_str())
        .bind(verification.status.as_str())
        .bind(i64::from(verification.check_count))
        .bind(i64::from(verification.max_checks))
        .bind(i64::from(verification.send_count))
        .bind(i64::from(verification.max_sends))
        .bind(micros(verification.expires_at))
        .bind(micros(verification.last_sent_at))
        .bind(micros(verification.created_at))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        insert_code(
            &mut transaction,
            verification.id,
            &code,
            verification.created_at,
        )
        .await?;
        let queued = insert_code_message(&mut transaction, &message, verification.id).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(queued)
    }

    async fn list(&self, filter: &VerificationFilter) -> Result<Vec<Verification>, StoreError> {
        let rows: Vec<VerificationRow> = sqlx::query_as(
            r#"SELECT * FROM verifications
               WHERE api_key = $1
                 AND ($2 IS NULL OR $2 = CASE
                     WHEN status = 'pending' AND expires_at <= $9 THEN 'expired' ELSE status END)
                 AND ($3 IS NULL OR "to" = $3)
                 AND ($4 IS NULL OR created_at >= $4)
                 AND ($5 IS NULL OR created_at < $5)
                 AND ($6 IS NULL OR (created_at, id) < ($6, $7))
               ORDER BY created_at DESC, id DESC
               LIMIT $8"#,
        )
        .bind(filter.api_key.as_str())
        .bind(filter.status.map(VerificationStatus::as_str))
        .bind(filter.to.as_ref().map(|to| to.as_str()))
        .bind(filter.since.map(micros))
        .bind(filter.until.map(micros))
        .bind(filter.before.map(|cursor| micros(cursor.created_at)))
        .bind(filter.before.map(|cursor| cursor.id.as_uuid().hyphenated()))
        .bind(i64::from(filter.limit))
        .bind(micros(filter.now))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Verification::try_from).collect()
    }

    async fn get(&self, id: VerificationId) -> Result<Option<Verification>, StoreError> {
        let row: Option<VerificationRow> =
            sqlx::query_as("SELECT * FROM verifications WHERE id = $1")
                .bind(id.as_uuid().hyphenated())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        row.map(Verification::try_from).transpose()
    }

    async fn find_pending(
        &self,
        to: &PhoneNumber,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Verification>, StoreError> {
        let row: Option<VerificationRow> = sqlx::query_as(
            r#"SELECT * FROM verifications
               WHERE "to" = $1 AND api_key = $2 AND status = 'pending' AND expires_at > $3
               ORDER BY created_at DESC
               LIMIT 1"#,
        )
        .bind(to.as_str())
        .bind(api_key)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(Verification::try_from).transpose()
    }

    #[instrument(skip_all, fields(verification_id = %id))]
    async fn add_code(
        &self,
        id: VerificationId,
        code: CodeHash,
        message: NewMessage,
        now: DateTime<Utc>,
        last_sent_before: DateTime<Utc>,
    ) -> Result<Option<(Verification, Message)>, StoreError> {
        let mut transaction = self
            .writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(store_error)?;
        let row: Option<VerificationRow> = sqlx::query_as(
            r#"UPDATE verifications
               SET send_count = send_count + 1, last_sent_at = $2, updated_at = $2
               WHERE id = $1 AND status = 'pending' AND expires_at > $2
                 AND send_count < max_sends AND last_sent_at <= $3
               RETURNING *"#,
        )
        .bind(id.as_uuid().hyphenated())
        .bind(micros(now))
        .bind(micros(last_sent_before))
        .fetch_optional(&mut *transaction)
        .await
        .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let verification = Verification::try_from(row)?;
        insert_code(&mut transaction, id, &code, now).await?;
        let queued = insert_code_message(&mut transaction, &message, id).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(Some((verification, queued)))
    }

    #[instrument(skip_all, fields(verification_id = %id))]
    async fn count_check(
        &self,
        id: VerificationId,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Verification, Vec<CodeHash>)>, StoreError> {
        let row: Option<VerificationRow> = sqlx::query_as(
            r#"UPDATE verifications
               SET check_count = check_count + 1, updated_at = $2
               WHERE id = $1 AND api_key = $3 AND status = 'pending' AND expires_at > $2
                 AND check_count < max_checks
               RETURNING *"#,
        )
        .bind(id.as_uuid().hyphenated())
        .bind(micros(now))
        .bind(api_key)
        .fetch_optional(&self.writer)
        .await
        .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let verification = Verification::try_from(row)?;
        // Codes are only ever added, so reading them after counting misses nothing that
        // existed when the check was counted.
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT code_hash FROM verification_codes WHERE verification_id = $1 ORDER BY id",
        )
        .bind(id.as_uuid().hyphenated())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(Some((verification, code_hashes(hashes))))
    }

    #[instrument(skip_all, fields(verification_id = %id, status = %status))]
    async fn conclude(
        &self,
        id: VerificationId,
        status: VerificationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Statuses are the domain's fixed names, safe to spell out in the statement.
        let from: Vec<String> = VerificationStatus::able_to_become(status)
            .map(|from| format!("'{}'", from.as_str()))
            .collect();
        if from.is_empty() {
            return Ok(false);
        }
        let mut transaction = self
            .writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(store_error)?;
        let concluded = sqlx::query(&format!(
            "UPDATE verifications SET status = $2, updated_at = $3 \
             WHERE id = $1 AND status IN ({})",
            from.join(", ")
        ))
        .bind(id.as_uuid().hyphenated())
        .bind(status.as_str())
        .bind(micros(now))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        if concluded.rows_affected() != 1 {
            return Ok(false);
        }
        // Its codes are useless now: those still queued are never sent, and one being sent
        // right now is not sent again should its attempt end in a retry.
        sqlx::query(
            "UPDATE messages SET status = 'expired', body = '', updated_at = $2 \
             WHERE verification_id = $1 AND status = 'queued'",
        )
        .bind(id.as_uuid().hyphenated())
        .bind(micros(now))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE messages SET send_before = $2 \
             WHERE verification_id = $1 AND status = 'sending' \
             AND (send_before IS NULL OR send_before > $2)",
        )
        .bind(id.as_uuid().hyphenated())
        .bind(micros(now))
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(true)
    }
}
