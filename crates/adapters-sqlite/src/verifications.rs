//! Verifications and their code hashes on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CodeHash, Message, MessageId, NewMessage, PhoneNumber, Verification, VerificationId,
    VerificationStatus,
};
use ports::params::{self, Param};
use ports::{rows, LoggedDecision, StoreError, VerificationFilter, VerificationStore};
use sqlx::SqliteConnection;
use tracing::instrument;

use crate::fraud::log_decision_on;
use crate::messages::insert_code_message;
use crate::rows::{all, execute, json_uuids, micros, optional, query, store_error};
use crate::SqliteStore;

/// Stores a code with the message that carries it (a verification's attempts show which
/// message's code approved).
pub(crate) async fn insert_code(
    connection: &mut SqliteConnection,
    id: VerificationId,
    code: &CodeHash,
    message: MessageId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_codes (verification_id, code_hash, created_at, message_id) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_uuid().hyphenated())
    .bind(code.as_bytes())
    .bind(micros(now))
    .bind(message.as_uuid().hyphenated())
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl VerificationStore for SqliteStore {
    /// The message is stored as the carrier of this verification's code whatever its
    /// `verification_id` says, so that its body is forgotten once it has been sent.
    #[instrument(level = "debug", skip_all, fields(verification_id = %verification.id))]
    async fn create(
        &self,
        verification: &Verification,
        code: CodeHash,
        message: NewMessage,
        finding: Option<LoggedDecision>,
    ) -> Result<Message, StoreError> {
        let risk = params::risk_json(verification);
        let mut transaction = self.begin_write().await?;
        let verification_row = query(
            r#"INSERT INTO verifications (id, "to", channel, api_key, status, check_count,
                   max_checks, send_count, max_sends, expires_at, last_sent_at, created_at,
                   risk, amount, currency, payee, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $12)"#,
            &params::new_verification(verification, risk.as_deref()),
        );
        execute(verification_row, &mut *transaction).await?;
        insert_code(
            &mut transaction,
            verification.id,
            &code,
            message.id,
            verification.created_at,
        )
        .await?;
        let queued = insert_code_message(&mut transaction, &message, verification.id).await?;
        if let Some(finding) = &finding {
            log_decision_on(&mut transaction, finding).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(queued)
    }

    async fn list(&self, filter: &VerificationFilter) -> Result<Vec<Verification>, StoreError> {
        // Only the conditions the filter sets (see `params::verification_conditions`).
        let sql = format!(
            "SELECT * FROM verifications WHERE {} ORDER BY created_at DESC, id DESC LIMIT $8",
            params::verification_conditions(filter)
        );
        let page = query(&sql, &params::verification_filter(filter));
        all(page, &self.pool, rows::verification).await
    }

    async fn get(&self, id: VerificationId) -> Result<Option<Verification>, StoreError> {
        let get = query(
            "SELECT * FROM verifications WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        optional(get, &self.pool, rows::verification).await
    }

    async fn get_many(&self, ids: &[VerificationId]) -> Result<Vec<Verification>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            "SELECT * FROM verifications WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_uuids(ids.iter().map(VerificationId::as_uuid)));
        all(found, &self.pool, rows::verification).await
    }

    async fn find_pending(
        &self,
        to: &PhoneNumber,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Verification>, StoreError> {
        let pending = query(
            r#"SELECT * FROM verifications
               WHERE "to" = $1 AND api_key = $2 AND status = 'pending' AND expires_at > $3
               ORDER BY created_at DESC
               LIMIT 1"#,
            &[
                Param::text(to.as_str()),
                Param::text(api_key),
                Param::time(now),
            ],
        );
        optional(pending, &self.pool, rows::verification).await
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn add_code(
        &self,
        id: VerificationId,
        code: CodeHash,
        message: NewMessage,
        now: DateTime<Utc>,
        last_sent_before: DateTime<Utc>,
        finding: Option<LoggedDecision>,
    ) -> Result<Option<(Verification, Message)>, StoreError> {
        let mut transaction = self.begin_write().await?;
        let resend = query(
            r#"UPDATE verifications
               SET send_count = send_count + 1, last_sent_at = $2, updated_at = $2,
                   channel = $4
               WHERE id = $1 AND status = 'pending' AND expires_at > $2
                 AND send_count < max_sends AND last_sent_at <= $3
               RETURNING *"#,
            &[
                Param::id(id.as_uuid()),
                Param::time(now),
                Param::time(last_sent_before),
                Param::text(message.channel.as_str()),
            ],
        );
        let Some(verification) = optional(resend, &mut *transaction, rows::verification).await?
        else {
            return Ok(None);
        };
        insert_code(&mut transaction, id, &code, message.id, now).await?;
        let queued = insert_code_message(&mut transaction, &message, id).await?;
        if let Some(finding) = &finding {
            log_decision_on(&mut transaction, finding).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(Some((verification, queued)))
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn count_check(
        &self,
        id: VerificationId,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Verification, Vec<CodeHash>)>, StoreError> {
        let check = query(
            r#"UPDATE verifications
               SET check_count = check_count + 1, updated_at = $2
               WHERE id = $1 AND api_key = $3 AND status = 'pending' AND expires_at > $2
                 AND check_count < max_checks
               RETURNING *"#,
            &[
                Param::id(id.as_uuid()),
                Param::time(now),
                Param::text(api_key),
            ],
        );
        let Some(verification) = optional(check, &self.writer, rows::verification).await? else {
            return Ok(None);
        };
        // Codes are only ever added, so reading them after counting misses nothing that
        // existed when the check was counted.
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT code_hash FROM verification_codes WHERE verification_id = $1 ORDER BY id",
        )
        .bind(id.as_uuid().hyphenated())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let hashes = hashes.into_iter().map(CodeHash::from_bytes).collect();
        Ok(Some((verification, hashes)))
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id, status = %status))]
    async fn conclude(
        &self,
        id: VerificationId,
        status: VerificationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let from = params::literals(
            VerificationStatus::able_to_become(status).map(VerificationStatus::as_str),
        );
        if from.is_empty() {
            return Ok(false);
        }
        let mut transaction = self.begin_write().await?;
        let sql = format!(
            "UPDATE verifications SET status = $2, updated_at = $3 \
             WHERE id = $1 AND status IN ({from})"
        );
        let concluded = sqlx::query(&sql)
            .bind(id.as_uuid().hyphenated())
            .bind(status.as_str())
            .bind(micros(now));
        if execute(concluded, &mut *transaction).await? != 1 {
            return Ok(false);
        }
        // Its codes are useless now: those still queued are never sent, and one being sent
        // right now is not sent again should its attempt end in a retry.
        let codes = [Param::id(id.as_uuid()), Param::time(now)];
        let expire = query(
            "UPDATE messages SET status = 'expired', body = '', updated_at = $2 \
             WHERE verification_id = $1 AND status = 'queued'",
            &codes,
        );
        execute(expire, &mut *transaction).await?;
        let cut_short = query(
            "UPDATE messages SET send_before = $2 \
             WHERE verification_id = $1 AND status = 'sending' \
             AND (send_before IS NULL OR send_before > $2)",
            &codes,
        );
        execute(cut_short, &mut *transaction).await?;
        transaction.commit().await.map_err(store_error)?;
        self.events_may_be_recorded();
        Ok(true)
    }
}
