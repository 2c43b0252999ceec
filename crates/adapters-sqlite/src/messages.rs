//! The message queue on SQLite, with its two hot writes in batches (see `store_batch`):
//! messages queued by the API, and the outcomes the dispatcher records after each send.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Attempt, DeliveryEvent, Message, MessageId, MessageStatus, NewMessage, VerificationId,
};
use ports::params::{self, Param};
use ports::{
    rows, stored_queued, ClaimBudget, ClaimToken, Claimed, DeliveryUpdate, DispatchOutcome,
    Enqueued, Finish, MessageReports as _, MessageStore, StoreError,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteConnection, SqlitePool};
use store_batch::BatchWrite;
// The stores' spans are at debug: at info, the JSON log formatted each one's fields for every
// message, and the caller's span (the request, the send) already names the message.
use tracing::instrument;
use uuid::fmt::Hyphenated;
use uuid::Uuid;

use crate::deliveries::Delivery;
use crate::rows::{
    all, execute, instant, json_ids, json_value, micros, one, optional, query, store_error,
};
use crate::SqliteStore;

const INSERT_MESSAGE: &str = r#"INSERT INTO messages (id, "to", channel, template, body, segments,
       priority, status, api_key, idempotency_key, verification_id, send_before, attempt_count,
       next_attempt_at, created_at, updated_at, country, request_id, sensitive,
       idempotency_fingerprint, locale, content_sid, traceparent)
   VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, 0, $12, $12, $12, $13, $14,
       $15, $16, $17, $18, $19)
   RETURNING *"#;

/// Queues a message that carries a code of `verification_id`, inside the caller's transaction.
pub(crate) async fn insert_code_message(
    connection: &mut SqliteConnection,
    message: &NewMessage,
    verification_id: VerificationId,
) -> Result<Message, StoreError> {
    let country = message.to.country();
    let params = params::new_message(message, Some(verification_id), country.as_deref());
    one(
        query(INSERT_MESSAGE, &params),
        &mut *connection,
        rows::message,
    )
    .await
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
            .map(|message| {
                let country = message.to.country();
                let params =
                    params::new_message(message, message.verification_id, country.as_deref());
                serde_json::Value::Array(params.into_iter().map(json_value).collect())
            })
            .collect();
        let mut transaction = pool
            .begin_with(crate::BEGIN_WRITE)
            .await
            .map_err(store_error)?;
        // Rows are inserted, and checked against the unique index, in the burst's order: a key
        // repeated within a burst keeps its first message, as it would across bursts. (`WHERE
        // true` lets SQLite's parser tell the upsert's ON from a join's.)
        let inserted: Vec<String> = sqlx::query_scalar(
            r#"INSERT INTO messages (id, "to", channel, template, body, segments, priority,
                   status, api_key, idempotency_key, verification_id, send_before, attempt_count,
                   next_attempt_at, created_at, updated_at, country, request_id, sensitive,
                   idempotency_fingerprint, locale, content_sid, traceparent)
               SELECT m.value ->> 0, m.value ->> 1, m.value ->> 2, m.value ->> 3, m.value ->> 4,
                   m.value ->> 5, m.value ->> 6, 'queued', m.value ->> 7, m.value ->> 8,
                   m.value ->> 9, m.value ->> 10, 0, m.value ->> 11, m.value ->> 11,
                   m.value ->> 11, m.value ->> 12, m.value ->> 13, m.value ->> 14,
                   m.value ->> 15, m.value ->> 16, m.value ->> 17, m.value ->> 18
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
    let holder = query(
        "SELECT * FROM messages WHERE api_key = $1 AND idempotency_key = $2",
        &[
            Param::text(&message.api_key),
            Param::Text(message.idempotency_key.as_deref()),
        ],
    );
    match optional(holder, &mut *connection, rows::message).await? {
        Some(holder) => Ok(Enqueued::Existing(holder)),
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
        let record = query(
            "INSERT INTO message_attempts (message_id, number, started_at, finished_at, \
             outcome, http_status, error_code, error_message, provider, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &params::attempt(finish.id, attempt),
        );
        execute(record, &mut *connection).await?;
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
         ORDER BY locked_until LIMIT $2",
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
        let mut transaction = pool
            .begin_with(crate::BEGIN_WRITE)
            .await
            .map_err(store_error)?;
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
    #[instrument(level = "debug", skip_all, fields(message_id = %message.id))]
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        self.batched.enqueues.write(message).await
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let get = query(
            "SELECT * FROM messages WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        optional(get, &self.pool, rows::message).await
    }

    async fn by_idempotency_key(
        &self,
        api_key: &str,
        idempotency_key: &str,
    ) -> Result<Option<Message>, StoreError> {
        let holder = query(
            "SELECT * FROM messages WHERE api_key = $1 AND idempotency_key = $2",
            &[Param::text(api_key), Param::text(idempotency_key)],
        );
        optional(holder, &self.pool, rows::message).await
    }

    async fn attempts(&self, id: MessageId) -> Result<Vec<Attempt>, StoreError> {
        let attempts = query(
            "SELECT * FROM message_attempts WHERE message_id = $1 ORDER BY number, started_at, id",
            &[Param::id(id.as_uuid())],
        );
        all(attempts, &self.pool, rows::attempt).await
    }

    async fn get_with_attempts(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<(Message, Vec<Attempt>)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let messages =
            sqlx::query("SELECT * FROM messages WHERE id IN (SELECT value FROM json_each($1))")
                .bind(json_ids(ids));
        let messages = all(messages, &self.pool, rows::message).await?;
        let attempts = self.attempts_of(ids).await?;
        Ok(rows::with_attempts(messages, attempts))
    }

    #[instrument(level = "debug", skip_all, fields(limit = budget.limit))]
    async fn claim_within(
        &self,
        now: DateTime<Utc>,
        budget: &ClaimBudget,
    ) -> Result<Claimed, StoreError> {
        let locked_until = budget.lease_end(now);
        // The write lock, taken first, makes counting, booking and claiming one step.
        let mut transaction = self.begin_write().await?;
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
        let token = Uuid::new_v4();
        // Due rows and lapsed leases are found apart, each through its own index (named, so
        // that the plan cannot drift) and stopping at the limit: one WHERE for both read
        // every due row and sorted them (migration 0011).
        let claim = sqlx::query(
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
                           ORDER BY locked_until
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
        .bind(token.hyphenated());
        let found: Vec<SqliteRow> = claim
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?;
        for lapsed in &retried {
            if found
                .iter()
                .any(|row| row.try_get("id").ok() == Some(lapsed.id))
            {
                record_lost(&mut transaction, lapsed).await?;
            }
        }
        if let (Some(rate), false) = (&budget.sender_rate, found.is_empty()) {
            sqlx::query(
                "INSERT INTO sender_pacing (sender, next_send_at) VALUES ($1, $2) \
                 ON CONFLICT (sender) DO UPDATE SET next_send_at = excluded.next_send_at",
            )
            .bind(rate.sender.as_str())
            .bind(micros(allowance.next_send_at(found.len())))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        let claimed = found
            .into_iter()
            .map(|row| rows::claimed_message(&crate::rows::Lite(row)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(allowance.dispatch(claimed))
    }

    #[instrument(level = "debug", skip_all, fields(message_id = %id))]
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

    #[instrument(level = "debug", skip_all, fields(message_id = %id, status = %outcome.status()))]
    async fn finish(
        &self,
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A held claim means the message is `sending`, which the UPDATE re-checks.
        let Some(finish) = Finish::of_claim(claim, id, attempt, outcome, now) else {
            return Ok(false);
        };
        let next = finish.status;
        let recorded = self.batched.finishes.write(finish).await?;
        // `sent` and `failed` record an event for an API key with an endpoint receiving it.
        if recorded && matches!(next, MessageStatus::Sent | MessageStatus::Failed) {
            self.events_may_be_recorded();
        }
        Ok(recorded)
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
        due.map(|due| instant("messages.next_attempt_at", due))
            .transpose()
    }

    #[instrument(level = "debug", skip_all, fields(provider_sid = %provider_sid, status = %event.status))]
    async fn record_delivery(
        &self,
        provider_sid: &str,
        event: DeliveryEvent,
        idempotency_token: Option<String>,
    ) -> Result<DeliveryUpdate, StoreError> {
        // The write lock, taken before reading, makes the status judged the one updated.
        let transaction = Delivery(self.begin_write().await?);
        let update =
            ports::record_delivery(transaction, provider_sid, event, idempotency_token).await?;
        if matches!(update, DeliveryUpdate::Applied(_)) {
            self.events_may_be_recorded();
        }
        Ok(update)
    }

    async fn delivery_events(&self, id: MessageId) -> Result<Vec<DeliveryEvent>, StoreError> {
        let events = query(
            "SELECT status, error_code, error_message, price_amount, price_currency, received_at \
             FROM message_events WHERE message_id = $1 ORDER BY received_at, id",
            &[Param::id(id.as_uuid())],
        );
        all(events, &self.pool, rows::delivery_event).await
    }

    /// Claims messages still `sent` through `provider` for a status lookup: see
    /// [`ports::MessageStore::claim_unconfirmed`]. One statement, so SQLite's single writer makes
    /// it atomic.
    #[instrument(level = "debug", skip_all, fields(provider = %provider, limit))]
    async fn claim_unconfirmed(
        &self,
        provider: &str,
        sent_after: DateTime<Utc>,
        sent_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError> {
        // `updated_at` stays: it is when the message was sent, which the next claim compares.
        let claim = query(
            "UPDATE messages SET reconcile_after = $6 \
             WHERE id IN ( \
                 SELECT id FROM messages \
                 WHERE status = 'sent' AND provider = $1 \
                   AND updated_at >= $2 AND updated_at <= $3 \
                   AND (reconcile_after IS NULL OR reconcile_after <= $4) \
                 ORDER BY updated_at, id \
                 LIMIT $5 \
             ) \
             RETURNING *",
            &params::unconfirmed(provider, (sent_after, sent_before), now, limit, hold_until),
        );
        let mut claimed = all(claim, &self.writer, rows::message).await?;
        claimed.sort_by_key(|message| (message.updated_at, message.id));
        Ok(claimed)
    }
}
