//! Delivery events from the provider's status callbacks, on SQLite.

use chrono::{DateTime, Utc};
use domain::{DeliveryEvent, Message, MessageId, MessageStatus};
use ports::{DeliveryUpdate, StoreError};
use tracing::instrument;

use crate::messages::BEGIN_WRITE;
use crate::rows::{corrupt, instant, micros, price, store_error, MessageRow};
use crate::SqliteStore;

#[instrument(skip_all, fields(provider_sid = %provider_sid, status = %event.status))]
pub(crate) async fn record_delivery(
    store: &SqliteStore,
    provider_sid: &str,
    event: DeliveryEvent,
    idempotency_token: Option<String>,
) -> Result<DeliveryUpdate, StoreError> {
    // The write lock, taken before reading, makes the status judged below the one updated.
    let mut transaction = store
        .writer
        .begin_with(BEGIN_WRITE)
        .await
        .map_err(store_error)?;
    let row: Option<MessageRow> = sqlx::query_as("SELECT * FROM messages WHERE provider_sid = $1")
        .bind(provider_sid)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(store_error)?;
    let Some(row) = row else {
        return Ok(DeliveryUpdate::UnknownMessage);
    };
    let message = Message::try_from(row)?;
    let id = message.id.as_uuid().hyphenated();
    if let Some(token) = &idempotency_token {
        let seen: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM message_events \
             WHERE message_id = $1 AND idempotency_token = $2)",
        )
        .bind(id)
        .bind(token)
        .fetch_one(&mut *transaction)
        .await
        .map_err(store_error)?;
        if seen {
            return Ok(DeliveryUpdate::Duplicate(message));
        }
    }
    if !message.status.can_transition_to(event.status) {
        return Ok(DeliveryUpdate::Ignored(message));
    }
    let (price_amount, price_currency) = match &event.price {
        Some(price) => (Some(price.amount.as_str()), Some(price.currency.as_str())),
        None => (None, None),
    };
    let updated: MessageRow = sqlx::query_as(
        "UPDATE messages \
         SET status = $2, error_code = $3, error_message = $4, \
             price_amount = COALESCE($5, price_amount), \
             price_currency = COALESCE($6, price_currency), updated_at = $7 \
         WHERE id = $1 \
         RETURNING *",
    )
    .bind(id)
    .bind(event.status.as_str())
    .bind(event.error_code.as_deref())
    .bind(event.error_message.as_deref())
    .bind(price_amount)
    .bind(price_currency)
    .bind(micros(event.received_at))
    .fetch_one(&mut *transaction)
    .await
    .map_err(store_error)?;
    sqlx::query(
        "INSERT INTO message_events (message_id, status, error_code, error_message, \
         price_amount, price_currency, received_at, idempotency_token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(event.status.as_str())
    .bind(event.error_code.as_deref())
    .bind(event.error_message.as_deref())
    .bind(price_amount)
    .bind(price_currency)
    .bind(micros(event.received_at))
    .bind(idempotency_token)
    .execute(&mut *transaction)
    .await
    .map_err(store_error)?;
    transaction.commit().await.map_err(store_error)?;
    Ok(DeliveryUpdate::Applied(Message::try_from(updated)?))
}

/// Claims messages still `sent` through `provider` for a status lookup: see
/// [`ports::MessageStore::claim_unconfirmed`]. One statement, so SQLite's single writer makes
/// it atomic.
#[instrument(skip_all, fields(provider = %provider, limit))]
pub(crate) async fn claim_unconfirmed(
    store: &SqliteStore,
    provider: &str,
    (sent_after, sent_before): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    limit: u32,
    hold_until: DateTime<Utc>,
) -> Result<Vec<Message>, StoreError> {
    // `updated_at` stays: it is when the message was sent, which the next claim compares.
    let rows: Vec<MessageRow> = sqlx::query_as(
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
    )
    .bind(provider)
    .bind(micros(sent_after))
    .bind(micros(sent_before))
    .bind(micros(now))
    .bind(i64::from(limit))
    .bind(micros(hold_until))
    .fetch_all(&store.writer)
    .await
    .map_err(store_error)?;
    let mut messages = rows
        .into_iter()
        .map(Message::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    messages.sort_by_key(|message| (message.updated_at, message.id));
    Ok(messages)
}

pub(crate) async fn delivery_events(
    store: &SqliteStore,
    id: MessageId,
) -> Result<Vec<DeliveryEvent>, StoreError> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT status, error_code, error_message, price_amount, price_currency, received_at \
         FROM message_events WHERE message_id = $1 ORDER BY received_at, id",
    )
    .bind(id.as_uuid().hyphenated())
    .fetch_all(&store.pool)
    .await
    .map_err(store_error)?;
    rows.into_iter().map(DeliveryEvent::try_from).collect()
}

#[derive(sqlx::FromRow)]
struct EventRow {
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    price_amount: Option<String>,
    price_currency: Option<String>,
    received_at: i64,
}

impl TryFrom<EventRow> for DeliveryEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(DeliveryEvent {
            status: row
                .status
                .parse::<MessageStatus>()
                .map_err(|error| corrupt("message_events.status", error))?,
            error_code: row.error_code,
            error_message: row.error_message,
            price: price(row.price_amount, row.price_currency),
            received_at: instant("message_events.received_at", row.received_at)?,
        })
    }
}
