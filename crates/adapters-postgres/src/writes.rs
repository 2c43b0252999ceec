//! The queue's two hot writes, in batches (see `store_batch`): messages queued by the API,
//! and the outcomes the dispatcher records after each send; and [`Batched`], every batched
//! write of a store, with those of `verifications` (create, checks) and `rate_limits` (send
//! limits, country counts).

use std::collections::HashSet;
use std::time::Duration;

use domain::{Attempt, Message, NewMessage, VerificationId};
use ports::{stored_queued, Enqueued, Finish, StoreError};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryScalar;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::connections::Connections;
use crate::rate_limits::{Acquires, CountrySends};
use crate::rows::{store_error, MessageRow};
use crate::verifications::{Checks, Creates};
use store_batch::{BatchWrite, Batcher, Writers};

/// Statements of one kind in flight at once, and how long a writer under load waits for more
/// writes: under load the writes of a burst reach a writer a few at a time, and a statement
/// costs PostgreSQL about the same for a few rows as for many. On the benchmark machine,
/// lingering 1 ms raised verifications started from 630-720/s to 860-890/s and accepted
/// messages from 1,520-1,670/s to 1,770-1,950/s, and brought the p99 latency at 1,000
/// messages/s from 31-56 ms down to 19-28 ms: less CPU spent per write left more for the rest.
const WRITERS: Writers = Writers {
    count: 2,
    linger: Duration::from_millis(1),
};

/// The batched writes of one store.
#[derive(Debug)]
pub(crate) struct Batched {
    pub enqueues: Batcher<Enqueues>,
    pub finishes: Batcher<Finishes>,
    pub country_sends: Batcher<CountrySends>,
    pub creates: Batcher<Creates>,
    pub acquires: Batcher<Acquires>,
    pub checks: Batcher<Checks>,
}

impl Batched {
    pub(crate) fn start(connections: &Connections) -> Self {
        Self {
            enqueues: Batcher::start(Enqueues, connections.clone(), WRITERS),
            finishes: Batcher::start(Finishes, connections.clone(), WRITERS),
            country_sends: Batcher::start(CountrySends, connections.clone(), WRITERS),
            creates: Batcher::start(Creates, connections.clone(), WRITERS),
            // One at a time: each batch locks a client's API-key row for all its sends.
            acquires: Batcher::start(
                Acquires,
                connections.clone(),
                Writers {
                    count: 1,
                    ..WRITERS
                },
            ),
            checks: Batcher::start(Checks, connections.clone(), WRITERS),
        }
    }
}

/// One column of every row, as the array `unnest` reads.
pub(crate) fn column<'a, T, U>(rows: &'a [T], value: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(value).collect()
}

/// Queues the messages of `$1` to `$16` (see [`bind_messages`]).
macro_rules! insert_messages_sql {
    () => {
        r#"INSERT INTO messages (id, "to", channel, template, body, segments, priority,
               status, api_key, idempotency_key, verification_id, send_before,
               attempt_count, next_attempt_at, created_at, updated_at, country, request_id,
               sensitive, idempotency_fingerprint)
           SELECT id, "to", channel, template, body, segments, priority, 'queued', api_key,
               idempotency_key, verification_id, send_before, 0, created_at, created_at,
               created_at, country, request_id, sensitive, idempotency_fingerprint
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
               $6::int8[], $7::int2[], $8::text[], $9::text[], $10::uuid[],
               $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::bool[],
               $16::text[])
             AS new (id, "to", channel, template, body, segments, priority, api_key,
               idempotency_key, verification_id, send_before, created_at, country,
               request_id, sensitive, idempotency_fingerprint)"#
    };
}
pub(crate) use insert_messages_sql;

/// `sql` with the columns of `messages` bound as `$1` to `$16`, each message with the
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
        // not inserted, and not returned.
        let inserted: Vec<Uuid> = bind_messages(
            concat!(
                insert_messages_sql!(),
                " ON CONFLICT (api_key, idempotency_key) WHERE idempotency_key IS NOT NULL",
                " DO NOTHING RETURNING id"
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

/// The message stored earlier under `message`'s idempotency key: the insert gave way to it
/// once it was committed, so this later statement sees it.
async fn holder_of_key(
    connection: &mut PgConnection,
    message: &NewMessage,
) -> Result<Message, StoreError> {
    let existing: Option<MessageRow> =
        sqlx::query_as("SELECT * FROM messages WHERE api_key = $1 AND idempotency_key = $2")
            .bind(message.api_key.as_str())
            .bind(message.idempotency_key.as_deref())
            .fetch_optional(connection)
            .await
            .map_err(store_error)?;
    match existing {
        Some(row) => Message::try_from(row),
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
        // The attempt is written only for the messages whose claim held, in the same
        // statement, so that both are committed together. Claims are matched as well as ids:
        // a batch may hold a lapsed claim's finish beside the new claim's.
        let recorded: Vec<(Uuid, Uuid)> = sqlx::query_as(
            r#"WITH outcome AS (
                   SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                       $5::text[], $6::int8[], $7::text[], $8::text[], $9::bool[], $10::text[],
                       $11::text[], $12::timestamptz[], $13::bool[], $14::timestamptz[])
                     AS o (id, claim_token, status, provider, provider_sid, segments,
                       price_amount, price_currency, replace_error, error_code, error_message,
                       next_attempt_at, forget_body, now)
               ),
               recorded AS (
                   UPDATE messages AS m
                   SET status = o.status,
                       provider = COALESCE(o.provider, m.provider),
                       provider_sid = COALESCE(o.provider_sid, m.provider_sid),
                       segments = COALESCE(o.segments, m.segments),
                       price_amount = COALESCE(o.price_amount, m.price_amount),
                       price_currency = COALESCE(o.price_currency, m.price_currency),
                       error_code = CASE WHEN o.replace_error THEN o.error_code
                           ELSE m.error_code END,
                       error_message = CASE WHEN o.replace_error THEN o.error_message
                           ELSE m.error_message END,
                       next_attempt_at = COALESCE(o.next_attempt_at, m.next_attempt_at),
                       body = CASE WHEN o.forget_body
                               AND (m.sensitive OR m.verification_id IS NOT NULL)
                           THEN '' ELSE m.body END,
                       locked_until = NULL, claim_token = NULL, updated_at = o.now
                   FROM outcome AS o
                   -- Naming the status (which a claim token implies, by a CHECK) keeps the
                   -- plan that figure 1 of the benchmark measured fastest: without it,
                   -- accepted messages fell from ~5,700/s to ~4,400/s.
                   WHERE m.id = o.id AND m.claim_token = o.claim_token
                     AND m.status = 'sending'
                   RETURNING m.id, o.claim_token
               ),
               attempts AS (
                   INSERT INTO message_attempts (message_id, number, started_at, finished_at,
                       outcome, http_status, error_code, error_message, provider)
                   SELECT a.id, a.number, a.started_at, a.finished_at, a.outcome, a.http_status,
                       a.error_code, a.error_message, a.provider
                   FROM unnest($15::uuid[], $16::uuid[], $17::int8[], $18::timestamptz[],
                       $19::timestamptz[], $20::text[], $21::int4[], $22::text[], $23::text[],
                       $24::text[])
                     AS a (id, claim_token, number, started_at, finished_at, outcome,
                       http_status, error_code, error_message, provider)
                   WHERE (a.id, a.claim_token) IN (SELECT id, claim_token FROM recorded)
               )
               SELECT id, claim_token FROM recorded"#,
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
