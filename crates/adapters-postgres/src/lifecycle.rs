//! Retention, erasure and job leases on PostgreSQL. Retention first drops the weeks of
//! partitions wholly past it (`partitions`), then removes the rest in batches: each batch is one
//! transaction that picks its rows (`FOR UPDATE SKIP LOCKED`, so a message being finished is
//! left for the next run), folds those of hours the rollup job has not folded yet into the
//! rollups (`rollups`), and deletes the children before the rows they hang off, counting each
//! kind.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::PhoneNumber;
use ports::{DataLifecycle, FoldStep, LeaseHolder, Removed, Retained, StoreError};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::partitions::{self, Family};
use crate::rollups::{self, hold_shared, UNFOLDED};
use crate::rows::store_error;
use crate::PgStore;

/// The messages among `ids` of hours not folded yet, counted into the rollups (those of folded
/// hours are in them already).
fn fold_removed_messages_sql() -> String {
    rollups::fold_messages_sql(
        &format!("FROM messages WHERE id = ANY($1) AND {UNFOLDED}"),
        1,
    )
}

/// The messages of `table` (a week of messages, detached to be dropped) of hours not folded
/// yet, counted into the rollups exactly as a batch of its messages would be.
pub(crate) fn fold_table_sql(table: &str) -> String {
    rollups::fold_messages_sql(&format!("FROM {table} WHERE {UNFOLDED}"), 1)
}

#[async_trait]
impl DataLifecycle for PgStore {
    async fn take_lease(
        &self,
        job: &str,
        holder: LeaseHolder,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A second taker waits for the first's insert, then finds the lease held.
        let taken: Option<i32> = sqlx::query_scalar(
            "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $4) \
             ON CONFLICT (job) DO UPDATE SET holder = EXCLUDED.holder, \
                 expires_at = EXCLUDED.expires_at \
             WHERE job_leases.expires_at <= $3 OR job_leases.holder = EXCLUDED.holder \
             RETURNING 1",
        )
        .bind(job)
        .bind(Uuid::from_u128(holder.0))
        .bind(now)
        .bind(until)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, job: &str, holder: LeaseHolder) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(Uuid::from_u128(holder.0))
            .execute(&self.pool)
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
        // Whole weeks first, each in transactions of its own.
        let dropped = match kind {
            Retained::Messages => {
                partitions::drop_expired(&self.pool, Family::Messages, before).await?
            }
            Retained::Verifications => {
                partitions::drop_expired(&self.pool, Family::Verifications, before).await?
            }
            Retained::FraudDecisions => Removed::default(),
        };
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let limit = i64::from(limit);
        let mut removed = match kind {
            Retained::Messages => {
                let ids: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM messages \
                     WHERE created_at < $1 AND status NOT IN ('queued', 'sending') \
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                )
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
                remove_messages(&mut transaction, &ids).await?
            }
            Retained::Verifications => {
                let ids: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM verifications WHERE created_at < $1 \
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                )
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
                hold_shared(&mut transaction).await?;
                rollups::fold_removed_verifications(&mut transaction, &ids).await?;
                remove_verifications(&mut transaction, &ids).await?
            }
            Retained::FraudDecisions => Removed {
                fraud_decisions: sqlx::query(
                    "DELETE FROM fraud_decisions WHERE id IN ( \
                         SELECT id FROM fraud_decisions WHERE at < $1 ORDER BY at LIMIT $2 \
                         FOR UPDATE SKIP LOCKED)",
                )
                .bind(before)
                .bind(limit)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?
                .rows_affected(),
                ..Removed::default()
            },
        };
        transaction.commit().await.map_err(store_error)?;
        removed.add(dropped);
        Ok(removed)
    }

    async fn prepare_partitions(&self) -> Result<u64, StoreError> {
        partitions::prepare(&self.pool).await
    }

    async fn empty_bodies(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        // Walks `messages_bodies_kept`, which its rows leave as they are emptied. The picked
        // ids are looked up by id, within the range of ids they span: as `id IN (...)` the
        // planner joined them to every week of messages read whole (docs/performance.md, "The
        // history figures"), and the range keeps the lookups to the weeks that hold them.
        let emptied = sqlx::query(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id FROM messages \
                 WHERE created_at < $1 AND body <> '' AND NOT sensitive \
                   AND status NOT IN ('queued', 'sending') \
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE messages SET body = '' \
             WHERE id = ANY (ARRAY(SELECT id FROM picked)) \
               AND id >= (SELECT id FROM picked ORDER BY id LIMIT 1) \
               AND id <= (SELECT id FROM picked ORDER BY id DESC LIMIT 1)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
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
        .bind(now)
        .execute(&self.pool)
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
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // Locked, in flight or not: a finish waits for this transaction, then finds nothing.
        let messages: Vec<Uuid> =
            sqlx::query_scalar(r#"SELECT id FROM messages WHERE "to" = $1 FOR UPDATE"#)
                .bind(to.as_str())
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
        let verifications: Vec<Uuid> =
            sqlx::query_scalar(r#"SELECT id FROM verifications WHERE "to" = $1 FOR UPDATE"#)
                .bind(to.as_str())
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
        // Their conversion figures are kept, read while their messages are still there.
        hold_shared(&mut transaction).await?;
        rollups::fold_removed_verifications(&mut transaction, &verifications).await?;
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

/// Folds the messages `ids` into the rollups, then deletes them with their attempts and
/// delivery events.
async fn remove_messages(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    hold_shared(&mut *connection).await?;
    sqlx::query(&fold_removed_messages_sql())
        .bind(ids)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    // The idempotency keys they took are free again.
    sqlx::query(
        "DELETE FROM message_idempotency_keys AS k USING messages AS m \
         WHERE m.id = ANY($1) AND k.api_key = m.api_key \
           AND k.idempotency_key = m.idempotency_key AND k.message_id = m.id",
    )
    .bind(ids)
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    let attempts = delete_where(connection, "message_attempts", "message_id", ids).await?;
    let delivery_events = delete_where(connection, "message_events", "message_id", ids).await?;
    // The events told to client webhooks show the message (its number): they go with it, and
    // their deliveries with them.
    delete_where(connection, "webhook_events", "object_id", ids).await?;
    let messages = delete_where(connection, "messages", "id", ids).await?;
    Ok(Removed {
        messages,
        attempts,
        delivery_events,
        ..Removed::default()
    })
}

/// Deletes the verifications `ids` with their codes and the fraud decisions about them.
async fn remove_verifications(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Removed, StoreError> {
    if ids.is_empty() {
        return Ok(Removed::default());
    }
    let verification_codes =
        delete_where(connection, "verification_codes", "verification_id", ids).await?;
    let fraud_decisions =
        delete_where(connection, "fraud_decisions", "verification_id", ids).await?;
    // What hangs off a verification and names it: its events and its fallback workflow.
    delete_where(connection, "webhook_events", "object_id", ids).await?;
    delete_where(connection, "verification_workflows", "verification_id", ids).await?;
    let verifications = delete_where(connection, "verifications", "id", ids).await?;
    Ok(Removed {
        verifications,
        verification_codes,
        fraud_decisions,
        ..Removed::default()
    })
}

/// Deletes the rows of `table` whose `column` is among `ids` (both names are constants of this
/// module, never input).
async fn delete_where(
    connection: &mut PgConnection,
    table: &'static str,
    column: &'static str,
    ids: &[Uuid],
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE {column} = ANY($1)"))
        .bind(ids)
        .execute(connection)
        .await
        .map_err(store_error)?;
    Ok(deleted.rows_affected())
}
