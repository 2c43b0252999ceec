//! Delivery events from the provider's status callbacks, on SQLite: the statements that
//! `ports::record_delivery` judges with.

use domain::{DeliveryEvent, Message, MessageId};
use ports::params::{self, Param};
use ports::rows::StoredRow;
use ports::{rows, DeliveryTransaction, Reported, StoreError};
use sqlx::{Sqlite, Transaction};

use crate::rollups;
use crate::rows::{execute, one, optional, query, store_error, Lite};

/// A delivery report's transaction, begun with the write lock (`SqliteStore::begin_write`):
/// no other writer can change the message between its reading and its update.
pub(crate) struct Delivery(pub(crate) Transaction<'static, Sqlite>);

impl DeliveryTransaction for Delivery {
    async fn message(
        &mut self,
        provider_sid: &str,
        token: Option<&str>,
    ) -> Result<Option<Reported>, StoreError> {
        let found = query(
            "SELECT *, EXISTS (SELECT 1 FROM message_events \
                 WHERE message_id = messages.id AND idempotency_token = $2) AS repeated \
             FROM messages WHERE provider_sid = $1",
            &[Param::text(provider_sid), Param::Text(token)],
        );
        optional(found, &mut *self.0, reported).await
    }

    async fn apply(
        &mut self,
        id: MessageId,
        event: &DeliveryEvent,
        token: Option<&str>,
    ) -> Result<Message, StoreError> {
        let params = params::delivery(id, event, token);
        // A receipt for a message of a folded hour: its figures leave the rollups before the
        // change and come back after it (rare: the fold waits for the usual receipts).
        let key = id.as_uuid().hyphenated().to_string();
        let folded = rollups::folded(&mut self.0, &key).await?;
        rollups::refold(&mut self.0, &key, &folded, -1).await?;
        let updated = one(
            query(
                "UPDATE messages \
                 SET status = $2, error_code = $3, error_message = $4, \
                     price_amount = COALESCE($5, price_amount), \
                     price_currency = COALESCE($6, price_currency), updated_at = $7 \
                 WHERE id = $1 \
                 RETURNING *",
                &params[..7],
            ),
            &mut *self.0,
            rows::message,
        )
        .await?;
        let event = query(
            "INSERT INTO message_events (message_id, status, error_code, error_message, \
             price_amount, price_currency, received_at, idempotency_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &params,
        );
        execute(event, &mut *self.0).await?;
        rollups::refold(&mut self.0, &key, &folded, 1).await?;
        Ok(updated)
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await.map_err(store_error)
    }
}

fn reported(row: &Lite) -> Result<Reported, StoreError> {
    Ok(Reported {
        message: rows::message(row)?,
        repeated: row.flag("repeated")?.unwrap_or(false),
    })
}
