//! Verifications and their code hashes on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CodeHash, Message, NewMessage, PhoneNumber, Verification, VerificationId, VerificationStatus,
};
use ports::{StoreError, VerificationStore};
use sqlx::PgConnection;
use tracing::instrument;

use crate::messages::insert_code_message;
use crate::rows::{code_hashes, store_error, VerificationRow};

/// A verification as `count_check` counted it, with its code hashes.
#[derive(sqlx::FromRow)]
struct CountedRow {
    #[sqlx(flatten)]
    verification: VerificationRow,
    code_hashes: Vec<Vec<u8>>,
}
use crate::writes::queued;
use crate::PgStore;

async fn insert_code(
    connection: &mut PgConnection,
    id: VerificationId,
    code: &CodeHash,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_codes (verification_id, code_hash, created_at) \
         VALUES ($1, $2, $3)",
    )
    .bind(id.as_uuid())
    .bind(code.as_bytes())
    .bind(now)
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl VerificationStore for PgStore {
    /// The message is stored as the carrier of this verification's code whatever its
    /// `verification_id` says, so that its body is forgotten once it has been sent.
    #[instrument(skip_all, fields(verification_id = %verification.id))]
    async fn create(
        &self,
        verification: &Verification,
        code: CodeHash,
        message: NewMessage,
    ) -> Result<Message, StoreError> {
        // One statement, so one round trip and one commit for the three rows: the code and
        // its message are checked against their verification at the statement's end.
        sqlx::query(
            r#"WITH verification AS (
                   INSERT INTO verifications (id, "to", channel, api_key, status, check_count,
                       max_checks, send_count, max_sends, expires_at, last_sent_at, created_at,
                       updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
               ),
               code AS (
                   INSERT INTO verification_codes (verification_id, code_hash, created_at)
                   VALUES ($1, $13, $12)
               )
               INSERT INTO messages (id, "to", channel, template, body, segments, priority,
                   status, api_key, idempotency_key, verification_id, send_before,
                   attempt_count, next_attempt_at, created_at, updated_at, country, request_id)
               VALUES ($14, $15, $16, $17, $18, $19, $20, 'queued', $21, $22, $1, $23, 0, $24,
                   $24, $24, $25, $26)"#,
        )
        .bind(verification.id.as_uuid())
        .bind(verification.to.as_str())
        .bind(verification.channel.as_str())
        .bind(verification.api_key.as_str())
        .bind(verification.status.as_str())
        .bind(i64::from(verification.check_count))
        .bind(i64::from(verification.max_checks))
        .bind(i64::from(verification.send_count))
        .bind(i64::from(verification.max_sends))
        .bind(verification.expires_at)
        .bind(verification.last_sent_at)
        .bind(verification.created_at)
        .bind(code.as_bytes())
        .bind(message.id.as_uuid())
        .bind(message.to.as_str())
        .bind(message.channel.as_str())
        .bind(message.template.as_deref())
        .bind(message.body.as_str())
        .bind(i64::from(message.segments))
        .bind(message.priority.rank())
        .bind(message.api_key.as_str())
        .bind(message.idempotency_key.as_deref())
        .bind(message.send_before)
        .bind(message.created_at)
        .bind(message.to.country())
        .bind(message.request_id.as_deref())
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        let queued = queued(&message, Some(verification.id));
        self.queue_notifier.queued(queued.id);
        Ok(queued)
    }

    async fn get(&self, id: VerificationId) -> Result<Option<Verification>, StoreError> {
        let row: Option<VerificationRow> =
            sqlx::query_as("SELECT * FROM verifications WHERE id = $1")
                .bind(id.as_uuid())
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
        .bind(now)
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
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // The row lock this takes makes concurrent resends wait, then fail the interval test
        // against the winner's `last_sent_at`.
        let row: Option<VerificationRow> = sqlx::query_as(
            r#"UPDATE verifications
               SET send_count = send_count + 1, last_sent_at = $2, updated_at = $2
               WHERE id = $1 AND status = 'pending' AND expires_at > $2
                 AND send_count < max_sends AND last_sent_at <= $3
               RETURNING *"#,
        )
        .bind(id.as_uuid())
        .bind(now)
        .bind(last_sent_before)
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
        self.queue_notifier.queued(queued.id);
        Ok(Some((verification, queued)))
    }

    #[instrument(skip_all, fields(verification_id = %id))]
    async fn count_check(
        &self,
        id: VerificationId,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Verification, Vec<CodeHash>)>, StoreError> {
        // One statement: its snapshot may predate a code added while it waited for the row,
        // but no one can hold that code yet (it is sent only after its commit).
        let row: Option<CountedRow> = sqlx::query_as(
            r#"WITH counted AS (
                   UPDATE verifications
                   SET check_count = check_count + 1, updated_at = $2
                   WHERE id = $1 AND api_key = $3 AND status = 'pending' AND expires_at > $2
                     AND check_count < max_checks
                   RETURNING *
               )
               SELECT counted.*, ARRAY(
                   SELECT code_hash FROM verification_codes
                   WHERE verification_id = counted.id ORDER BY id
               ) AS code_hashes
               FROM counted"#,
        )
        .bind(id.as_uuid())
        .bind(now)
        .bind(api_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(|row| {
            Ok((
                Verification::try_from(row.verification)?,
                code_hashes(row.code_hashes),
            ))
        })
        .transpose()
    }

    #[instrument(skip_all, fields(verification_id = %id, status = %status))]
    async fn conclude(
        &self,
        id: VerificationId,
        status: VerificationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let from: Vec<&str> = VerificationStatus::able_to_become(status)
            .map(VerificationStatus::as_str)
            .collect();
        if from.is_empty() {
            return Ok(false);
        }
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let concluded = sqlx::query(
            "UPDATE verifications SET status = $2, updated_at = $3 \
             WHERE id = $1 AND status = ANY($4)",
        )
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(now)
        .bind(from)
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
        .bind(id.as_uuid())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "UPDATE messages SET send_before = $2 \
             WHERE verification_id = $1 AND status = 'sending' \
             AND (send_before IS NULL OR send_before > $2)",
        )
        .bind(id.as_uuid())
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(true)
    }
}
