//! Retention, erasure and job leases in SQLite. Each batch is one write transaction on the
//! writer connection (so a batch holds the one writer only as long as its rows take): it picks
//! its rows, folds those of hours the rollup job has not folded yet into the rollups
//! (`rollups`), and deletes the children before the rows they hang off, counting each kind.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::PhoneNumber;
use ports::{DataLifecycle, FoldStep, LeaseHolder, Removed, Retained, StoreError};
use sqlx::SqliteConnection;
use uuid::Uuid;

use crate::rollups::{self, UNFOLDED};
use crate::rows::{micros, store_error};
use crate::SqliteStore;

#[async_trait]
impl DataLifecycle for SqliteStore {
    async fn take_lease(
        &self,
        job: &str,
        holder: LeaseHolder,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $4) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at \
             WHERE job_leases.expires_at <= $3 OR job_leases.holder = excluded.holder \
             RETURNING 1",
        )
        .bind(job)
        .bind(Uuid::from_u128(holder.0).hyphenated().to_string())
        .bind(micros(now))
        .bind(micros(until))
        .fetch_optional(&self.writer)
        .await
        .map_err(store_error)?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, job: &str, holder: LeaseHolder) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(Uuid::from_u128(holder.0).hyphenated().to_string())
            .execute(&self.writer)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn remove_expired(
        &self,
        kind: Retained,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Removed, StoreError> {
        let mut transaction = self.begin_write().await?;
        let removed = match kind {
            Retained::Messages => {
                let ids = ids_of(
                    &mut transaction,
                    "SELECT id FROM messages \
                     WHERE created_at < $1 AND status NOT IN ('queued', 'sending') \
                     ORDER BY created_at LIMIT $2",
                    micros(before),
                    limit,
                )
                .await?;
                remove_messages(&mut transaction, &ids).await?
            }
            Retained::Verifications => {
                let ids = ids_of(
                    &mut transaction,
                    "SELECT id FROM verifications WHERE created_at < $1 \
                     ORDER BY created_at LIMIT $2",
                    micros(before),
                    limit,
                )
                .await?;
                rollups::fold_removed_verifications(&mut transaction, &json(&ids)).await?;
                remove_verifications(&mut transaction, &ids).await?
            }
            Retained::FraudDecisions => Removed {
                fraud_decisions: sqlx::query(
                    "DELETE FROM fraud_decisions WHERE id IN ( \
                         SELECT id FROM fraud_decisions WHERE at < $1 ORDER BY at LIMIT $2)",
                )
                .bind(micros(before))
                .bind(i64::from(limit))
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?
                .rows_affected(),
                ..Removed::default()
            },
        };
        transaction.commit().await.map_err(store_error)?;
        Ok(removed)
    }

    /// SQLite keeps one table per kind: retention removes its rows in batches, nothing is
    /// partitioned.
    async fn prepare_partitions(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn empty_bodies(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let emptied = sqlx::query(
            "UPDATE messages SET body = '' WHERE id IN ( \
                 SELECT id FROM messages \
                 WHERE created_at < $1 AND body <> '' AND NOT sensitive \
                   AND status NOT IN ('queued', 'sending') \
                 ORDER BY created_at LIMIT $2)",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(store_error)?;
        Ok(emptied.rows_affected())
    }

    async fn cancel_verifications_to(
        &self,
        to: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let canceled = sqlx::query(
            r#"UPDATE verifications SET status = 'canceled', updated_at = $2
               WHERE "to" = $1 AND status = 'pending'"#,
        )
        .bind(to.as_str())
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(store_error)?;
        Ok(canceled.rows_affected())
    }

    async fn fold_rollups(
        &self,
        now: DateTime<Utc>,
        settle: TimeDelta,
        max_hours: u32,
    ) -> Result<FoldStep, StoreError> {
        self.fold(now, settle, max_hours).await
    }

    async fn rollup_watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.watermark().await
    }

    async fn erase_number(&self, to: &PhoneNumber) -> Result<Removed, StoreError> {
        let mut transaction = self.begin_write().await?;
        let messages: Vec<String> =
            sqlx::query_scalar(r#"SELECT id FROM messages WHERE "to" = $1"#)
                .bind(to.as_str())
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
        let verifications: Vec<String> =
            sqlx::query_scalar(r#"SELECT id FROM verifications WHERE "to" = $1"#)
                .bind(to.as_str())
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
        // Their conversion figures are kept, read while their messages are still there.
        rollups::fold_removed_verifications(&mut transaction, &json(&verifications)).await?;
        let mut removed = remove_messages(&mut transaction, &messages).await?;
        removed.add(remove_verifications(&mut transaction, &verifications).await?);
        removed.fraud_decisions += sqlx::query(r#"DELETE FROM fraud_decisions WHERE "to" = $1"#)
            .bind(to.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?
            .rows_affected();
        transaction.commit().await.map_err(store_error)?;
        Ok(removed)
    }
}

async fn ids_of(
    connection: &mut SqliteConnection,
    sql: &'static str,
    before: i64,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(sql)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(connection)
        .await
        .map_err(store_error)
}

/// The ids as the JSON array `json_each` reads.
fn json(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// Folds the messages `ids` into the rollups, then deletes them with their attempts and
/// delivery events.
async fn remove_messages(
    connection: &mut SqliteConnection,
    ids: &[String],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let ids = json(ids);
    sqlx::query(&rollups::fold_messages_sql(
        &format!("FROM messages WHERE id IN (SELECT value FROM json_each($1)) AND {UNFOLDED}"),
        1,
    ))
    .bind(&ids)
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    let attempts = delete_where(connection, "message_attempts", "message_id", &ids).await?;
    let delivery_events = delete_where(connection, "message_events", "message_id", &ids).await?;
    // The events told to client webhooks show the message (its number): they go with it, and
    // their deliveries with them.
    delete_where(connection, "webhook_events", "object_id", &ids).await?;
    let messages = delete_where(connection, "messages", "id", &ids).await?;
    Ok(Removed {
        messages,
        attempts,
        delivery_events,
        ..Removed::default()
    })
}

/// Deletes the verifications `ids` with their codes and the fraud decisions about them.
async fn remove_verifications(
    connection: &mut SqliteConnection,
    ids: &[String],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let ids = json(ids);
    let verification_codes =
        delete_where(connection, "verification_codes", "verification_id", &ids).await?;
    let fraud_decisions =
        delete_where(connection, "fraud_decisions", "verification_id", &ids).await?;
    // What hangs off a verification and names it: its events and its fallback workflow.
    delete_where(connection, "webhook_events", "object_id", &ids).await?;
    delete_where(
        connection,
        "verification_workflows",
        "verification_id",
        &ids,
    )
    .await?;
    let verifications = delete_where(connection, "verifications", "id", &ids).await?;
    Ok(Removed {
        verifications,
        verification_codes,
        fraud_decisions,
        ..Removed::default()
    })
}

/// Deletes the rows of `table` whose `column` is in the JSON array `ids` (both names are
/// constants of this module, never input).
async fn delete_where(
    connection: &mut SqliteConnection,
    table: &'static str,
    column: &'static str,
    ids: &str,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(&format!(
        "DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each($1))"
    ))
    .bind(ids)
    .execute(connection)
    .await
    .map_err(store_error)?;
    Ok(deleted.rows_affected())
}
