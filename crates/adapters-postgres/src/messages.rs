//! The message queue on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Attempt, DeliveryEvent, Message, MessageId, MessageStatus, NewMessage, VerificationId,
};
use ports::{
    stored_queued, ClaimBudget, ClaimToken, Claimed, ClaimedMessage, DeliveryUpdate,
    DispatchOutcome, Enqueued, Finish, MessageStore, StoreError,
};
use sqlx::{Connection as _, PgConnection};
use tracing::instrument;
use uuid::Uuid;

use crate::rows::{store_error, AttemptRow, MessageRow};
use crate::writes::{bind_messages, column, insert_messages_sql};
use crate::PgStore;

/// Queues a message that carries a code of `verification_id`, inside the caller's transaction.
pub(crate) async fn insert_code_message(
    connection: &mut PgConnection,
    message: &NewMessage,
    verification_id: VerificationId,
) -> Result<Message, StoreError> {
    bind_messages(
        concat!(insert_messages_sql!(), " RETURNING id"),
        &[(message, Some(verification_id))],
    )
    .fetch_one(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(stored_queued(message, Some(verification_id)))
}

/// Serializes capped claims across instances (`pg_advisory_xact_lock`); any constant no other
/// code in the database uses.
const CLAIM_LOCK: i64 = 0x736d_735f_636c_6169;

/// The order in which due messages are claimed, which `RETURNING` does not keep.
fn dispatch_order(a: &ClaimedMessage, b: &ClaimedMessage) -> std::cmp::Ordering {
    b.message
        .priority
        .cmp(&a.message.priority)
        .then(a.message.created_at.cmp(&b.message.created_at))
        .then(a.message.id.cmp(&b.message.id))
}

#[async_trait]
impl MessageStore for PgStore {
    #[instrument(skip_all, fields(message_id = %message.id))]
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        let enqueued = self.batched.enqueues.write(message).await?;
        if let Enqueued::Created(created) = &enqueued {
            self.queue_notifier.queued(created.id);
        }
        Ok(enqueued)
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let row: Option<MessageRow> = sqlx::query_as("SELECT * FROM messages WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(Message::try_from).transpose()
    }

    async fn attempts(&self, id: MessageId) -> Result<Vec<Attempt>, StoreError> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT * FROM message_attempts WHERE message_id = $1 ORDER BY number, started_at, id",
        )
        .bind(id.as_uuid())
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
        let mut connection = self.hot.acquire().await?;
        let mut transaction = connection.begin().await.map_err(store_error)?;
        let capped = budget.max_in_flight.is_some() || budget.sender_rate.is_some();
        if capped {
            // Counting what is in flight and claiming must be one step across instances, or
            // two claimers could each see room for the same last place. The claim's commit
            // skips the flush (it held the lock through it): a claim lost in a crash puts its
            // messages back in the queue, as a lease running out does, and a claim whose
            // message was sent is made durable by the flush of that send's outcome, which
            // writes the earlier WAL too. No bitmap scans: the count and the lapsed leases read
            // `messages_in_flight`, whose entries die as fast as sends finish, and only a plain
            // index scan marks dead entries so that later scans, the finishes' too, skip them
            // (with bitmap claims, a finish read 9,362 entries for 200 sends in flight).
            sqlx::query(
                "SELECT pg_advisory_xact_lock($1), \
                 set_config('synchronous_commit', 'off', true), \
                 set_config('enable_bitmapscan', 'off', true)",
            )
            .bind(CLAIM_LOCK)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        let in_flight: i64 = if budget.max_in_flight.is_some() {
            sqlx::query_scalar(
                "SELECT count(*) FROM messages \
                 WHERE status = 'sending' AND locked_until > $1 AND id <> ALL ($2)",
            )
            .bind(now)
            .bind(column(&budget.settling, |id| id.as_uuid()))
            .fetch_one(&mut *transaction)
            .await
            .map_err(store_error)?
        } else {
            0
        };
        let next_send_at: Option<DateTime<Utc>> = match &budget.sender_rate {
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
            next_send_at,
        );
        if allowance.count == 0 {
            transaction.commit().await.map_err(store_error)?;
            connection.park();
            return Ok(allowance.apply(Vec::new()));
        }
        let claim = Uuid::new_v4();
        // Each CTE runs once, so each row is locked once; rows another claimer holds are
        // skipped, and a row it changed since our snapshot is re-checked against the WHERE
        // before it is locked, so a message is never claimed twice. Due and lapsed rows are
        // found apart, each by an index scan that stops at the limit (migration 0011); when
        // both have rows, those beyond the limit stay locked, unclaimed, until the commit.
        // `IS TRUE` keeps `messages_next_due` out of the due rows' plan: statistics lag a
        // backlog that grows faster than autovacuum analyses, and with them the planner read
        // every due row through that index and sorted them all, so each claim cost more the
        // further the queue fell behind (docs/performance.md).
        //
        // A lapsed lease's claim never finished (its worker died): the claim that finds it
        // records a `lost` attempt for it, from that claim (`updated_at`, which only a claim
        // sets while a message is `sending`) to the lease's end, and fails the message
        // instead of claiming it once it has had `$5` attempts (`exhausted`, which takes no
        // place under the limit). The CTEs see the rows as they were before the statement.
        let rows: Vec<MessageRow> = sqlx::query_as(
            r#"WITH due AS (
                   SELECT id, priority, created_at FROM messages
                   WHERE status = 'queued' AND (next_attempt_at <= $1) IS TRUE
                   ORDER BY priority DESC, created_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               ), lapsed AS (
                   SELECT id, priority, created_at, attempt_count, updated_at, locked_until
                   FROM messages
                   WHERE status = 'sending' AND locked_until <= $1
                   ORDER BY priority DESC, created_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               ), claimed AS (
                   SELECT id, priority, created_at FROM due
                   UNION ALL
                   SELECT id, priority, created_at FROM lapsed WHERE attempt_count < $5
                   ORDER BY priority DESC, created_at, id
                   LIMIT $2
               ), exhausted AS (
                   UPDATE messages AS m
                   SET status = 'failed', locked_until = NULL, claim_token = NULL,
                       error_code = NULL,
                       error_message = 'the worker sending it was lost '
                           || (SELECT count(*) + 1 FROM message_attempts AS a
                               WHERE a.message_id = m.id AND a.outcome = 'lost')
                           || ' times',
                       body = CASE WHEN m.sensitive OR m.verification_id IS NOT NULL THEN '' ELSE m.body END,
                       updated_at = $1
                   FROM lapsed
                   WHERE m.id = lapsed.id AND lapsed.attempt_count >= $5
               ), lost AS (
                   INSERT INTO message_attempts (message_id, number, started_at, finished_at,
                       outcome, error_message)
                   SELECT id, attempt_count, updated_at, locked_until, 'lost',
                       'the worker sending it was lost'
                   FROM lapsed
                   WHERE attempt_count >= $5 OR id IN (SELECT id FROM claimed)
               )
               UPDATE messages AS m
               SET status = 'sending', locked_until = $3, claim_token = $4,
                   attempt_count = m.attempt_count + 1, updated_at = $1
               FROM claimed
               WHERE m.id = claimed.id
               RETURNING m.*"#,
        )
        .bind(now)
        .bind(i64::from(allowance.count))
        .bind(locked_until)
        .bind(claim)
        .bind(budget.max_attempts.map_or(i64::MAX, i64::from))
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        if let (Some(rate), false) = (&budget.sender_rate, rows.is_empty()) {
            sqlx::query(
                "INSERT INTO sender_pacing (sender, next_send_at) VALUES ($1, $2) \
                 ON CONFLICT (sender) DO UPDATE SET next_send_at = EXCLUDED.next_send_at",
            )
            .bind(rate.sender.as_str())
            .bind(allowance.next_send_at(rows.len()))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        connection.park();
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
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let released = sqlx::query(
            "UPDATE messages \
             SET status = 'queued', next_attempt_at = $3, locked_until = NULL, \
                 claim_token = NULL, attempt_count = attempt_count - 1, updated_at = $3 \
             WHERE id = $1 AND claim_token = $2 AND status = 'sending'",
        )
        .bind(id.as_uuid())
        .bind(Uuid::from_u128(claim.0))
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        if released.rows_affected() != 1 {
            return Ok(false);
        }
        transaction.commit().await.map_err(store_error)?;
        // Another instance may take it at once.
        self.queue_notifier.queued(id);
        Ok(true)
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
        // A held claim means the message is `sending`, which the write re-checks.
        let finish = match Finish::new(claim, id, attempt, outcome, now) {
            Ok(finish) => finish,
            Err(next) => {
                tracing::warn!("a claimed message cannot move to {next}");
                return Ok(false);
            }
        };
        let next = finish.status;
        let recorded = self.batched.finishes.write(finish).await?;
        if !recorded {
            return Ok(false);
        }
        // A retry is queued work too: a dispatcher sleeping until a later time must look again.
        if next == MessageStatus::Queued {
            self.queue_notifier.queued(id);
        }
        Ok(true)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // A lapsed lease makes a message due as surely as a retry time does.
        sqlx::query_scalar(
            "SELECT min(due) FROM ( \
                 SELECT min(next_attempt_at) AS due FROM messages WHERE status = 'queued' \
                 UNION ALL \
                 SELECT min(locked_until) FROM messages WHERE status = 'sending' \
             ) AS candidates",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
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
