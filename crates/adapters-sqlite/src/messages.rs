//! The message queue on SQLite.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{Attempt, DeliveryEvent, Message, MessageId, NewMessage, VerificationId};
use ports::{
    stored_queued, ClaimBudget, ClaimToken, Claimed, ClaimedMessage, DeliveryUpdate,
    DispatchOutcome, Enqueued, Finish, MessageStore, StoreError,
};
use sqlx::{SqliteConnection, SqlitePool};
use store_batch::BatchWrite;
use tracing::instrument;
use uuid::fmt::Hyphenated;
use uuid::Uuid;

use crate::rows::{json_ids, micros, store_error, AttemptRow, MessageRow};
use crate::SqliteStore;

const INSERT_MESSAGE: &str = r#"INSERT INTO messages (id, "to", channel, template, body, segments,
       priority, status, api_key, idempotency_key, verification_id, send_before, attempt_count,
       next_attempt_at, created_at, updated_at, country, request_id, sensitive,
       idempotency_fingerprint)
   VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, 0, $12, $12, $12, $13, $14,
       $15, $16)
   RETURNING *"#;

/// The transaction every multi-statement write uses: it takes the write lock before reading,
/// so it never has to upgrade a read lock another writer is waiting on (which SQLite answers
/// with an immediate `SQLITE_BUSY`, whatever the busy timeout).
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Queues a message that carries a code of `verification_id`, inside the caller's transaction.
pub(crate) async fn insert_code_message(
    connection: &mut SqliteConnection,
    message: &NewMessage,
    verification_id: VerificationId,
) -> Result<Message, StoreError> {
    let row: MessageRow = sqlx::query_as(INSERT_MESSAGE)
        .bind(message.id.as_uuid().hyphenated())
        .bind(message.to.as_str())
        .bind(message.channel.as_str())
        .bind(message.template.as_deref())
        .bind(message.body.as_str())
        .bind(i64::from(message.segments))
        .bind(message.priority.rank())
        .bind(message.api_key.as_str())
        .bind(message.idempotency_key.as_deref())
        .bind(verification_id.as_uuid().hyphenated())
        .bind(message.send_before.map(micros))
        .bind(micros(message.created_at))
        .bind(message.to.country())
        .bind(message.request_id.as_deref())
        .bind(message.sensitive)
        .bind(message.idempotency_fingerprint.as_deref())
        .fetch_one(&mut *connection)
        .await
        .map_err(store_error)?;
    Message::try_from(row)
}

/// The order in which due messages are claimed, which `RETURNING` does not keep.
fn dispatch_order(a: &ClaimedMessage, b: &ClaimedMessage) -> std::cmp::Ordering {
    b.message
        .priority
        .cmp(&a.message.priority)
        .then(a.message.created_at.cmp(&b.message.created_at))
        .then(a.message.id.cmp(&b.message.id))
}

/// `MessageStore::enqueue` in batches (see `store_batch`): a burst is one statement, its rows
/// read from a JSON array. A statement per message cost a hand-off to sqlx's worker thread
/// and back each: futex waits and context switches took half the service's CPU.
pub(crate) struct Enqueues;

impl BatchWrite for Enqueues {
    type Pool = SqlitePool;
    type Item = NewMessage;
    type Output = Enqueued;

    async fn write(
        &self,
        pool: &SqlitePool,
        messages: &[NewMessage],
    ) -> Result<Vec<Enqueued>, StoreError> {
        let ids: Vec<String> = messages
            .iter()
            .map(|message| message.id.as_uuid().hyphenated().to_string())
            .collect();
        let rows: Vec<serde_json::Value> = messages
            .iter()
            .zip(&ids)
            .map(|(message, id)| {
                serde_json::json!([
                    id,
                    message.to.as_str(),
                    message.channel.as_str(),
                    message.template.as_deref(),
                    message.body.as_str(),
                    message.segments,
                    message.priority.rank(),
                    message.api_key.as_str(),
                    message.idempotency_key.as_deref(),
                    message
                        .verification_id
                        .map(|id| id.as_uuid().hyphenated().to_string()),
                    message.send_before.map(micros),
                    micros(message.created_at),
                    message.to.country(),
                    message.request_id.as_deref(),
                    message.sensitive,
                    message.idempotency_fingerprint.as_deref(),
                ])
            })
            .collect();
        let mut transaction = pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        // Rows are inserted, and checked against the unique index, in the burst's order: a key
        // repeated within a burst keeps its first message, as it would across bursts. (`WHERE
        // true` lets SQLite's parser tell the upsert's ON from a join's.)
        let inserted: Vec<String> = sqlx::query_scalar(
            r#"INSERT INTO messages (id, "to", channel, template, body, segments, priority,
                   status, api_key, idempotency_key, verification_id, send_before, attempt_count,
                   next_attempt_at, created_at, updated_at, country, request_id, sensitive,
                   idempotency_fingerprint)
               SELECT m.value ->> 0, m.value ->> 1, m.value ->> 2, m.value ->> 3, m.value ->> 4,
                   m.value ->> 5, m.value ->> 6, 'queued', m.value ->> 7, m.value ->> 8,
                   m.value ->> 9, m.value ->> 10, 0, m.value ->> 11, m.value ->> 11,
                   m.value ->> 11, m.value ->> 12, m.value ->> 13, m.value ->> 14,
                   m.value ->> 15
               FROM json_each($1) AS m
               WHERE true
               ORDER BY m.key
               ON CONFLICT (api_key, idempotency_key) WHERE idempotency_key IS NOT NULL
               DO NOTHING
               RETURNING id"#,
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        let inserted: HashSet<String> = inserted.into_iter().collect();
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, id) in messages.iter().zip(&ids) {
            outcomes.push(if inserted.contains(id) {
                Enqueued::Created(stored_queued(message, message.verification_id))
            } else {
                existing(&mut transaction, message).await?
            });
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(outcomes)
    }
}

/// The message holding the idempotency key that kept `message` out (writes take turns, so it
/// has committed, or is in this transaction).
async fn existing(
    connection: &mut SqliteConnection,
    message: &NewMessage,
) -> Result<Enqueued, StoreError> {
    let existing: Option<MessageRow> =
        sqlx::query_as("SELECT * FROM messages WHERE api_key = $1 AND idempotency_key = $2")
            .bind(message.api_key.as_str())
            .bind(message.idempotency_key.as_deref())
            .fetch_optional(&mut *connection)
            .await
            .map_err(store_error)?;
    match existing {
        Some(row) => Ok(Enqueued::Existing(Message::try_from(row)?)),
        None => Err(StoreError::Corrupt(format!(
            "message {} was not stored and no message holds its idempotency key",
            message.id
        ))),
    }
}

/// Records `finish` in `connection`'s transaction if its claim still holds.
async fn finish_in(connection: &mut SqliteConnection, finish: &Finish) -> Result<bool, StoreError> {
    let fields = &finish.columns;
    let updated = sqlx::query(
        r#"UPDATE messages
           SET status = $3,
               provider = COALESCE($14, provider),
               provider_sid = COALESCE($4, provider_sid),
               segments = COALESCE($5, segments),
               price_amount = COALESCE($12, price_amount),
               price_currency = COALESCE($13, price_currency),
               error_code = CASE WHEN $6 THEN $7 ELSE error_code END,
               error_message = CASE WHEN $6 THEN $8 ELSE error_message END,
               next_attempt_at = COALESCE($9, next_attempt_at),
               body = CASE WHEN $10 AND (sensitive OR verification_id IS NOT NULL)
                   THEN '' ELSE body END,
               locked_until = NULL, claim_token = NULL, updated_at = $11
           WHERE id = $1 AND claim_token = $2 AND status = 'sending'"#,
    )
    .bind(finish.id.as_uuid().hyphenated())
    .bind(Uuid::from_u128(finish.claim.0).hyphenated())
    .bind(finish.status.as_str())
    .bind(fields.provider_sid.as_deref())
    .bind(fields.segments.map(i64::from))
    .bind(fields.replace_error)
    .bind(fields.error_code.as_deref())
    .bind(fields.error_message.as_deref())
    .bind(fields.next_attempt_at.map(micros))
    .bind(finish.forget_body)
    .bind(micros(finish.now))
    .bind(fields.price.as_ref().map(|price| price.amount.as_str()))
    .bind(fields.price.as_ref().map(|price| price.currency.as_str()))
    .bind(fields.provider.as_deref())
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(attempt) = &finish.attempt {
        sqlx::query(
            "INSERT INTO message_attempts (message_id, number, started_at, finished_at, \
             outcome, http_status, error_code, error_message, provider) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(finish.id.as_uuid().hyphenated())
        .bind(i64::from(attempt.number))
        .bind(micros(attempt.started_at))
        .bind(micros(attempt.finished_at))
        .bind(attempt.outcome.as_str())
        .bind(attempt.http_status.map(i64::from))
        .bind(attempt.error_code.as_deref())
        .bind(attempt.error_message.as_deref())
        .bind(attempt.provider.as_deref())
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    }
    Ok(true)
}

/// A `sending` message whose lease ran out: its claim never finished.
#[derive(sqlx::FromRow)]
struct LapsedClaim {
    id: Hyphenated,
    attempt_count: i64,
    /// When it was claimed: only a claim sets `updated_at` while a message is `sending`.
    updated_at: i64,
    locked_until: i64,
}

/// The lapsed leases a claim of `limit` at `now` may take, in the claim's order: their lost
/// attempts must be read before the claim overwrites them. Usually none.
async fn lapsed_claims(
    connection: &mut SqliteConnection,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<LapsedClaim>, StoreError> {
    sqlx::query_as(
        "SELECT id, attempt_count, updated_at, locked_until \
         FROM messages INDEXED BY messages_in_flight \
         WHERE status = 'sending' AND locked_until <= $1 \
         ORDER BY priority DESC, created_at, id LIMIT $2",
    )
    .bind(micros(now))
    .bind(i64::from(limit))
    .fetch_all(connection)
    .await
    .map_err(store_error)
}

/// The attempt of a lapsed claim, from the claim to the lease's end.
async fn record_lost(
    connection: &mut SqliteConnection,
    lapsed: &LapsedClaim,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO message_attempts (message_id, number, started_at, finished_at, outcome, \
         error_message) VALUES ($1, $2, $3, $4, 'lost', 'the worker sending it was lost')",
    )
    .bind(lapsed.id)
    .bind(lapsed.attempt_count)
    .bind(lapsed.updated_at)
    .bind(lapsed.locked_until)
    .execute(connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Fails a message whose workers kept dying, naming how often (its lost attempt recorded).
async fn fail_lost(
    connection: &mut SqliteConnection,
    id: &Hyphenated,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE messages \
         SET status = 'failed', locked_until = NULL, claim_token = NULL, error_code = NULL, \
             error_message = 'the worker sending it was lost ' \
                 || (SELECT count(*) FROM message_attempts \
                     WHERE message_id = $1 AND outcome = 'lost') || ' times', \
             body = CASE WHEN sensitive OR verification_id IS NOT NULL THEN '' ELSE body END, \
             updated_at = $2 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(micros(now))
    .execute(connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// `MessageStore::finish` in batches: the outcomes of a burst of sends in one transaction.
pub(crate) struct Finishes;

impl BatchWrite for Finishes {
    type Pool = SqlitePool;
    type Item = Finish;
    /// Whether the claim still held, and the outcome was recorded.
    type Output = bool;

    async fn write(&self, pool: &SqlitePool, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        let mut transaction = pool.begin_with(BEGIN_WRITE).await.map_err(store_error)?;
        let mut recorded = Vec::with_capacity(finishes.len());
        for finish in finishes {
            recorded.push(finish_in(&mut transaction, finish).await?);
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(recorded)
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    #[instrument(skip_all, fields(message_id = %message.id))]
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        self.batched.enqueues.write(message).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = sqlx::query_as("SELECT * FROM messages WHERE id = $1")
            .bind(id.as_uuid().hyphenated())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(Message::try_from).transpose()
    }

    async fn attempts(&self, id: MessageId) -> Result<Vec<Attempt>, StoreError> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT * FROM message_attempts WHERE message_id = $1 ORDER BY number, started_at, id",
        )
        .bind(id.as_uuid().hyphenated())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Attempt::try_from).collect()
    }

    #[instrument(skip_all, fields(limit = budget.limit))]
    async fn claim_within(
        &self,
        now: DateTime<Utc>,
        budget: &ClaimBudget,
    ) -> Result<Claimed, StoreError> {
        let locked_until = TimeDelta::from_std(budget.lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // The write lock, taken first, makes counting, booking and claiming one step.
        let mut transaction = self
            .writer
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(store_error)?;
        let in_flight: i64 = if budget.max_in_flight.is_some() {
            sqlx::query_scalar(
                "SELECT count(*) FROM messages WHERE status = 'sending' AND locked_until > $1 \
                 AND id NOT IN (SELECT value FROM json_each($2))",
            )
            .bind(micros(now))
            .bind(json_ids(&budget.settling))
            .fetch_one(&mut *transaction)
            .await
            .map_err(store_error)?
        } else {
            0
        };
        let next_send_at: Option<i64> = match &budget.sender_rate {
            Some(rate) => {
                sqlx::query_scalar("SELECT next_send_at FROM sender_pacing WHERE sender = $1")
                    .bind(rate.sender.as_str())
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(store_error)?
            }
            None => None,
        };
        let allowance = budget.allowance(
            now,
            u32::try_from(in_flight).unwrap_or(u32::MAX),
            next_send_at.and_then(DateTime::from_timestamp_micros),
        );
        if allowance.count == 0 {
            transaction.commit().await.map_err(store_error)?;
            return Ok(allowance.apply(Vec::new()));
        }
        let lapsed = lapsed_claims(&mut transaction, now, allowance.count).await?;
        let max_attempts = budget.max_attempts.map_or(i64::MAX, i64::from);
        let (exhausted, retried): (Vec<_>, Vec<_>) = lapsed
            .into_iter()
            .partition(|lapsed| lapsed.attempt_count >= max_attempts);
        for lapsed in &exhausted {
            record_lost(&mut transaction, lapsed).await?;
            fail_lost(&mut transaction, &lapsed.id, now).await?;
        }
        let claim = Uuid::new_v4();
        // Due rows and lapsed leases are found apart, each through its own index (named, so
        // that the plan cannot drift) and stopping at the limit: one WHERE for both read
        // every due row and sorted them (migration 0011).
        let rows: Vec<MessageRow> = sqlx::query_as(
            r#"UPDATE messages
               SET status = 'sending', locked_until = $3, claim_token = $4,
                   attempt_count = attempt_count + 1, updated_at = $1
               WHERE id IN (
                   SELECT id FROM (
                       SELECT * FROM (
                           SELECT id, priority, created_at
                           FROM messages INDEXED BY messages_claim_order
                           WHERE status = 'queued' AND next_attempt_at <= $1
                           ORDER BY priority DESC, created_at, id
                           LIMIT $2
                       )
                       UNION ALL
                       SELECT * FROM (
                           SELECT id, priority, created_at
                           FROM messages INDEXED BY messages_in_flight
                           WHERE status = 'sending' AND locked_until <= $1
                           ORDER BY priority DESC, created_at, id
                           LIMIT $2
                       )
                   )
                   ORDER BY priority DESC, created_at, id
                   LIMIT $2
               )
               RETURNING *"#,
        )
        .bind(micros(now))
        .bind(i64::from(allowance.count))
        .bind(micros(locked_until))
        .bind(claim.hyphenated())
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        for lapsed in &retried {
            if rows.iter().any(|row| row.id == lapsed.id) {
                record_lost(&mut transaction, lapsed).await?;
            }
        }
        if let (Some(rate), false) = (&budget.sender_rate, rows.is_empty()) {
            sqlx::query(
                "INSERT INTO sender_pacing (sender, next_send_at) VALUES ($1, $2) \
                 ON CONFLICT (sender) DO UPDATE SET next_send_at = excluded.next_send_at",
            )
            .bind(rate.sender.as_str())
            .bind(micros(allowance.next_send_at(rows.len())))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        let mut claimed = rows
            .into_iter()
            .map(ClaimedMessage::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(dispatch_order);
        Ok(allowance.apply(claimed))
    }

    #[instrument(skip_all, fields(message_id = %id))]
    async fn release(
        &self,
        claim: ClaimToken,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "UPDATE messages \
             SET status = 'queued', next_attempt_at = $3, locked_until = NULL, \
                 claim_token = NULL, attempt_count = attempt_count - 1, updated_at = $3 \
             WHERE id = $1 AND claim_token = $2 AND status = 'sending'",
        )
        .bind(id.as_uuid().hyphenated())
        .bind(Uuid::from_u128(claim.0).hyphenated())
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(store_error)?;
        Ok(released.rows_affected() == 1)
    }

    #[instrument(skip_all, fields(message_id = %id, status = %outcome.status()))]
    async fn finish(
        &self,
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A held claim means the message is `sending`, which the UPDATE re-checks.
        let finish = match Finish::new(claim, id, attempt, outcome, now) {
            Ok(finish) => finish,
            Err(next) => {
                tracing::warn!("a claimed message cannot move to {next}");
                return Ok(false);
            }
        };
        self.batched.finishes.write(finish).await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // A lapsed lease makes a message due as surely as a retry time does.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT min(due) FROM ( \
                 SELECT min(next_attempt_at) AS due FROM messages WHERE status = 'queued' \
                 UNION ALL \
                 SELECT min(locked_until) FROM messages WHERE status = 'sending' \
             )",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        due.map(|due| {
            DateTime::from_timestamp_micros(due)
                .ok_or_else(|| StoreError::Corrupt(format!("{due} is not a time")))
        })
        .transpose()
    }

    async fn record_delivery(
        &self,
        provider_sid: &str,
        event: DeliveryEvent,
        idempotency_token: Option<String>,
    ) -> Result<DeliveryUpdate, StoreError> {
        crate::deliveries::record_delivery(self, provider_sid, event, idempotency_token).await
    }

    async fn delivery_events(&self, id: MessageId) -> Result<Vec<DeliveryEvent>, StoreError> {
        crate::deliveries::delivery_events(self, id).await
    }

    async fn claim_unconfirmed(
        &self,
        provider: &str,
        sent_after: DateTime<Utc>,
        sent_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError> {
        crate::deliveries::claim_unconfirmed(
            self,
            provider,
            (sent_after, sent_before),
            now,
            limit,
            hold_until,
        )
        .await
    }
}
