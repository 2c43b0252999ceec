//! The message queue on PostgreSQL, with its two hot writes in batches (see `store_batch`):
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
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryScalar;
use sqlx::{Connection as _, PgConnection};
use store_batch::BatchWrite;
// The stores' spans are at debug: at info, the JSON log formatted each one's fields for every
// message, and the caller's span (the request, the send) already names the message.
use tracing::instrument;
use uuid::Uuid;

use crate::connections::Connections;
use crate::deliveries::Delivery;
use crate::partitions::id_bounds;
use crate::rows::{all, column, optional, query, store_error};
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

/// How every claim's statements are planned (see `claim_within`), set in its `BEGIN`.
macro_rules! claim_plan_settings {
    () => {
        "set_config('enable_bitmapscan', 'off', true), \
         set_config('enable_sort', 'off', true), \
         set_config('plan_cache_mode', 'force_generic_plan', true)"
    };
}

/// Begins a claim, in the one round trip of its `BEGIN`.
const BEGIN_CLAIM: &str = concat!("BEGIN; SELECT ", claim_plan_settings!());

/// Begins a capped claim, in the one round trip of its `BEGIN`: serializes capped claims across
/// instances (`pg_advisory_xact_lock` on any constant no other code in the database uses,
/// `sms_clai` in hex) and commits without a flush (see `claim_within`).
const BEGIN_CAPPED_CLAIM: &str = concat!(
    "BEGIN; SELECT pg_advisory_xact_lock(8317430940350308713), \
     set_config('synchronous_commit', 'off', true), ",
    claim_plan_settings!()
);

/// Queues the messages of `$1` to `$19` (see [`bind_messages`]).
macro_rules! insert_messages_sql {
    () => {
        r#"INSERT INTO messages (id, "to", channel, template, body, segments, priority,
               status, api_key, idempotency_key, verification_id, send_before,
               attempt_count, next_attempt_at, created_at, updated_at, country, request_id,
               sensitive, idempotency_fingerprint, locale, content_sid, traceparent)
           SELECT id, "to", channel, template, body, segments, priority, 'queued', api_key,
               idempotency_key, verification_id, send_before, 0, created_at, created_at,
               created_at, country, request_id, sensitive, idempotency_fingerprint, locale,
               content_sid, traceparent
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
               $6::int8[], $7::int2[], $8::text[], $9::text[], $10::uuid[],
               $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::bool[],
               $16::text[], $17::text[], $18::text[], $19::text[])
             AS new (id, "to", channel, template, body, segments, priority, api_key,
               idempotency_key, verification_id, send_before, created_at, country,
               request_id, sensitive, idempotency_fingerprint, locale, content_sid,
               traceparent)"#
    };
}
pub(crate) use insert_messages_sql;

/// `sql` with the columns of `messages` bound as `$1` to `$19`, each message with the
/// verification it carries a code of.
pub(crate) fn bind_messages<'q>(
    sql: &'q str,
    messages: &[(&'q NewMessage, Option<VerificationId>)],
) -> QueryScalar<'q, Postgres, Uuid, PgArguments> {
    // Borrowed: the texts are encoded once, into the statement's arguments.
    sqlx::query_scalar(sql)
        .bind(column(messages, |(m, _)| m.id.as_uuid()))
        .bind(column(messages, |(m, _)| m.to.as_str()))
        .bind(column(messages, |(m, _)| m.channel.as_str()))
        .bind(column(messages, |(m, _)| m.template.as_deref()))
        .bind(column(messages, |(m, _)| m.body.as_str()))
        .bind(column(messages, |(m, _)| i64::from(m.segments)))
        .bind(column(messages, |(m, _)| m.priority.rank()))
        .bind(column(messages, |(m, _)| m.api_key.as_str()))
        .bind(column(messages, |(m, _)| m.idempotency_key.as_deref()))
        .bind(column(messages, |(_, v)| v.map(|id| id.as_uuid())))
        .bind(column(messages, |(m, _)| m.send_before))
        .bind(column(messages, |(m, _)| m.created_at))
        .bind(column(messages, |(m, _)| m.to.country()))
        .bind(column(messages, |(m, _)| m.request_id.as_deref()))
        .bind(column(messages, |(m, _)| m.sensitive))
        .bind(column(messages, |(m, _)| {
            m.idempotency_fingerprint.as_deref()
        }))
        .bind(column(messages, |(m, _)| m.locale.as_deref()))
        .bind(column(messages, |(m, _)| m.content_sid.as_deref()))
        .bind(column(messages, |(m, _)| m.traceparent.as_deref()))
}

/// `MessageStore::enqueue`.
pub(crate) struct Enqueues;

impl BatchWrite for Enqueues {
    type Pool = Connections;
    type Item = NewMessage;
    type Output = Enqueued;

    async fn write(
        &self,
        connections: &Connections,
        messages: &[NewMessage],
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut connection = connections.acquire().await?;
        // A message whose idempotency key is taken (also by an earlier row of this batch) is
        // not inserted, and not returned. The keys are unique in a table of their own, written
        // only for messages that carry one: `messages` is partitioned by id (migration 0037).
        let inserted: Vec<Uuid> = bind_messages(
            concat!(
                "WITH keyed AS (",
                "    INSERT INTO message_idempotency_keys (api_key, idempotency_key, message_id)",
                "    SELECT k.api_key, k.idempotency_key, k.id",
                "    FROM unnest($1::uuid[], $8::text[], $9::text[])",
                "      AS k (id, api_key, idempotency_key)",
                "    WHERE k.idempotency_key IS NOT NULL",
                "    ON CONFLICT DO NOTHING RETURNING message_id",
                ") ",
                insert_messages_sql!(),
                " WHERE new.idempotency_key IS NULL",
                " OR new.id IN (SELECT message_id FROM keyed)",
                " RETURNING id"
            ),
            &messages
                .iter()
                .map(|m| (m, m.verification_id))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        let mut enqueued = Vec::with_capacity(messages.len());
        for message in messages {
            enqueued.push(if inserted.contains(&message.id.as_uuid()) {
                Enqueued::Created(stored_queued(message, message.verification_id))
            } else {
                Enqueued::Existing(holder_of_key(&mut connection, message).await?)
            });
        }
        connection.park();
        Ok(enqueued)
    }
}

/// The message that took the idempotency key `$2` of the API key `$1`.
const HOLDER_OF_KEY: &str = "SELECT m.* FROM message_idempotency_keys AS k \
     JOIN messages AS m ON m.id = k.message_id \
     WHERE k.api_key = $1 AND k.idempotency_key = $2";

/// The message stored earlier under `message`'s idempotency key: the insert gave way to it
/// once it was committed, so this later statement sees it.
async fn holder_of_key(
    connection: &mut PgConnection,
    message: &NewMessage,
) -> Result<Message, StoreError> {
    let holder = query(
        HOLDER_OF_KEY,
        &[
            Param::text(&message.api_key),
            Param::Text(message.idempotency_key.as_deref()),
        ],
    );
    match optional(holder, connection, rows::message).await? {
        Some(holder) => Ok(holder),
        None => Err(StoreError::Corrupt(format!(
            "message {} was not stored and no message holds its idempotency key",
            message.id
        ))),
    }
}

pub(crate) struct Finishes;

impl BatchWrite for Finishes {
    type Pool = Connections;
    type Item = Finish;
    /// Whether the claim still held, and the outcome was recorded.
    type Output = bool;

    async fn write(
        &self,
        connections: &Connections,
        finishes: &[Finish],
    ) -> Result<Vec<bool>, StoreError> {
        let mut connection = connections.acquire().await?;
        // `sms_notify_finish` (migration 0042): each outcome, and its attempt only where the
        // claim held (ids and claim tokens matched), in one statement with a generic plan.
        // `$26` and `$27` bound the ids (`id_bounds`).
        let (least, greatest) = id_bounds(finishes.iter().map(|f| f.id.as_uuid()));
        let recorded: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT recorded_id, recorded_claim FROM sms_notify_finish(\
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25, $26, $27)",
        )
        .bind(column(finishes, |f| f.id.as_uuid()))
        .bind(column(finishes, |f| Uuid::from_u128(f.claim.0)))
        .bind(column(finishes, |f| f.status.as_str()))
        .bind(column(finishes, |f| f.columns.provider.as_deref()))
        .bind(column(finishes, |f| f.columns.provider_sid.as_deref()))
        .bind(column(finishes, |f| f.columns.segments.map(i64::from)))
        .bind(column(finishes, |f| {
            f.columns.price.as_ref().map(|price| price.amount.as_str())
        }))
        .bind(column(finishes, |f| {
            f.columns
                .price
                .as_ref()
                .map(|price| price.currency.as_str())
        }))
        .bind(column(finishes, |f| f.columns.replace_error))
        .bind(column(finishes, |f| f.columns.error_code.as_deref()))
        .bind(column(finishes, |f| f.columns.error_message.as_deref()))
        .bind(column(finishes, |f| f.columns.next_attempt_at))
        .bind(column(finishes, |f| f.forget_body))
        .bind(column(finishes, |f| f.now))
        .bind(attempt_column(finishes, |f, _| f.id.as_uuid()))
        .bind(attempt_column(finishes, |f, _| Uuid::from_u128(f.claim.0)))
        .bind(attempt_column(finishes, |_, a| i64::from(a.number)))
        .bind(attempt_column(finishes, |_, a| a.started_at))
        .bind(attempt_column(finishes, |_, a| a.finished_at))
        .bind(attempt_column(finishes, |_, a| a.outcome.as_str()))
        .bind(attempt_column(finishes, |_, a| {
            a.http_status.map(i32::from)
        }))
        .bind(attempt_column(finishes, |_, a| a.error_code.as_deref()))
        .bind(attempt_column(finishes, |_, a| a.error_message.as_deref()))
        .bind(attempt_column(finishes, |_, a| a.provider.as_deref()))
        .bind(attempt_column(finishes, |_, a| a.traceparent.as_deref()))
        .bind(least)
        .bind(greatest)
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        let recorded: HashSet<(Uuid, Uuid)> = recorded.into_iter().collect();
        Ok(column(finishes, |f| {
            recorded.contains(&(f.id.as_uuid(), Uuid::from_u128(f.claim.0)))
        }))
    }
}

/// One column of the attempts among `finishes` (an expired message has none).
fn attempt_column<'a, U>(
    finishes: &'a [Finish],
    value: impl Fn(&'a Finish, &'a Attempt) -> U,
) -> Vec<U> {
    finishes
        .iter()
        .filter_map(|finish| {
            finish
                .attempt
                .as_ref()
                .map(|attempt| value(finish, attempt))
        })
        .collect()
}

#[async_trait]
impl MessageStore for PgStore {
    #[instrument(level = "debug", skip_all, fields(message_id = %message.id))]
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, StoreError> {
        let enqueued = self.batched.enqueues.write(message).await?;
        if let Enqueued::Created(created) = &enqueued {
            self.queue_notifier.queued(created.id);
        }
        Ok(enqueued)
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
            HOLDER_OF_KEY,
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
        let uuids: Vec<Uuid> = ids.iter().map(MessageId::as_uuid).collect();
        let messages = sqlx::query("SELECT * FROM messages WHERE id = ANY($1)").bind(uuids);
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
        let floor = self.queue_floor.get(&self.pool).await?;
        let mut connection = self.hot.acquire().await?;
        // Counting what is in flight and claiming must be one step across instances, or
        // two claimers could each see room for the same last place. The claim's commit
        // skips the flush (it held the lock through it): a claim lost in a crash puts its
        // messages back in the queue, as a lease running out does, and a claim whose
        // message was sent is made durable by the flush of that send's outcome, which
        // writes the earlier WAL too. No bitmap scans: the count and the lapsed leases read
        // `messages_in_flight`, whose entries die as fast as sends finish, and only a plain
        // index scan marks dead entries so that later scans, the finishes' too, skip them.
        // Generic plans: a custom plan, which PostgreSQL makes for a prepared statement's
        // first executions on each connection, plans the claim again each time, costing
        // more than the claim's reads (docs/performance.md, "The claim's custom plans").
        // No sorts where an index gives the order: a plan made while statistics say the
        // queue is empty (a new database, or one vacuumed between bursts) read every queued
        // message through `messages_next_due` and sorted them, instead of reading
        // `messages_claim_order` up to the limit, and a backlog made each claim slower.
        let capped = budget.max_in_flight.is_some() || budget.sender_rate.is_some();
        let mut transaction = connection
            .begin_with(if capped {
                BEGIN_CAPPED_CLAIM
            } else {
                BEGIN_CLAIM
            })
            .await
            .map_err(store_error)?;
        let in_flight: i64 = if budget.max_in_flight.is_some() {
            let count = format!(
                "SELECT count(*) FROM messages \
                 WHERE status = 'sending' AND locked_until > $1 AND id <> ALL ($2) \
                 AND id >= {floor}"
            );
            sqlx::query_scalar(&count)
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
        let token = Uuid::new_v4();
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
        // Lapsed leases are read in the order they ran out, the in-flight index's own: in the
        // queue's order, a generic plan made while the tables were small read every message
        // in flight through `messages_by_status_channel` and sorted them, at every claim.
        // The queue's floor keeps the weeks before it out of the plan (`QueueFloor`).
        let claim = format!(
            r#"WITH due AS (
                   SELECT id, priority, created_at FROM messages
                   WHERE status = 'queued' AND (next_attempt_at <= $1) IS TRUE AND id >= {floor}
                   ORDER BY priority DESC, created_at, id
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED
               ), lapsed AS (
                   SELECT id, priority, created_at, attempt_count, updated_at, locked_until
                   FROM messages
                   WHERE status = 'sending' AND locked_until <= $1 AND id >= {floor}
                   ORDER BY locked_until
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
                   WHERE m.id = lapsed.id AND lapsed.attempt_count >= $5 AND m.id >= {floor}
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
               WHERE m.id = claimed.id AND m.id >= {floor}
               RETURNING m.*"#
        );
        let claim = sqlx::query(&claim)
            .bind(now)
            .bind(i64::from(allowance.count))
            .bind(locked_until)
            .bind(token)
            .bind(budget.max_attempts.map_or(i64::MAX, i64::from));
        let claimed = all(claim, &mut *transaction, rows::claimed_message).await?;
        if let (Some(rate), false) = (&budget.sender_rate, claimed.is_empty()) {
            sqlx::query(
                "INSERT INTO sender_pacing (sender, next_send_at) VALUES ($1, $2) \
                 ON CONFLICT (sender) DO UPDATE SET next_send_at = EXCLUDED.next_send_at",
            )
            .bind(rate.sender.as_str())
            .bind(allowance.next_send_at(claimed.len()))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        connection.park();
        Ok(allowance.dispatch(claimed))
    }

    #[instrument(level = "debug", skip_all, fields(message_id = %id))]
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

    #[instrument(level = "debug", skip_all, fields(message_id = %id, status = %outcome.status()))]
    async fn finish(
        &self,
        claim: ClaimToken,
        id: MessageId,
        attempt: Option<Attempt>,
        outcome: DispatchOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A held claim means the message is `sending`, which the write re-checks.
        let Some(finish) = Finish::of_claim(claim, id, attempt, outcome, now) else {
            return Ok(false);
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
        // `sent` and `failed` record an event for an API key with an endpoint receiving it.
        if matches!(next, MessageStatus::Sent | MessageStatus::Failed) {
            self.events_may_be_recorded();
        }
        Ok(true)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // A lapsed lease makes a message due as surely as a retry time does.
        let floor = self.queue_floor.get(&self.pool).await?;
        let next_due = format!(
            "SELECT min(due) FROM ( \
                 SELECT min(next_attempt_at) AS due FROM messages \
                 WHERE status = 'queued' AND id >= {floor} \
                 UNION ALL \
                 SELECT min(locked_until) FROM messages \
                 WHERE status = 'sending' AND id >= {floor} \
             ) AS candidates"
        );
        sqlx::query_scalar(&next_due)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }

    #[instrument(level = "debug", skip_all, fields(provider_sid = %provider_sid, status = %event.status))]
    async fn record_delivery(
        &self,
        provider_sid: &str,
        event: DeliveryEvent,
        idempotency_token: Option<String>,
    ) -> Result<DeliveryUpdate, StoreError> {
        let transaction = Delivery::begin(self).await?;
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
    /// [`ports::MessageStore::claim_unconfirmed`]. `SKIP LOCKED` and the hold keep two instances
    /// from looking up the same message.
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
            r#"WITH due AS (
                   SELECT id FROM messages
                   WHERE status = 'sent' AND provider = $1
                     AND updated_at >= $2 AND updated_at <= $3
                     AND (reconcile_after IS NULL OR reconcile_after <= $4)
                   ORDER BY updated_at, id
                   LIMIT $5
                   FOR UPDATE SKIP LOCKED
               )
               UPDATE messages AS m SET reconcile_after = $6
               FROM due WHERE m.id = due.id
               RETURNING m.*"#,
            &params::unconfirmed(provider, (sent_after, sent_before), now, limit, hold_until),
        );
        let mut messages = all(claim, &self.pool, rows::message).await?;
        messages.sort_by_key(|message| (message.updated_at, message.id));
        Ok(messages)
    }
}
