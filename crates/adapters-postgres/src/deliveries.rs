//! Delivery events from the provider's status callbacks, on PostgreSQL: the statements that
//! `ports::record_delivery` judges with.

use domain::{DeliveryEvent, Message, MessageId};
use ports::params::{self, Param};
use ports::{rows, DeliveryTransaction, StoreError};
use sqlx::{Postgres, Transaction};

use crate::rollups;
use crate::rows::{one, optional, query, store_error};
use crate::PgStore;

/// A delivery report's transaction: `FOR UPDATE` holds the message's row until the commit.
pub(crate) struct Delivery(Transaction<'static, Postgres>);

impl Delivery {
    pub(crate) async fn begin(store: &PgStore) -> Result<Self, StoreError> {
        Ok(Self(store.pool.begin().await.map_err(store_error)?))
    }
}

impl DeliveryTransaction for Delivery {
    async fn message(&mut self, provider_sid: &str) -> Result<Option<Message>, StoreError> {
        let locked = query(
            "SELECT * FROM messages WHERE provider_sid = $1 FOR UPDATE",
            &[Param::text(provider_sid)],
        );
        optional(locked, &mut *self.0, rows::message).await
    }

    async fn has_event(&mut self, id: MessageId, token: &str) -> Result<bool, StoreError> {
        query(
            "SELECT EXISTS (SELECT 1 FROM message_events \
             WHERE message_id = $1 AND idempotency_token = $2)",
            &[Param::id(id.as_uuid()), Param::text(token)],
        )
        .fetch_one(&mut *self.0)
        .await
        .and_then(|found| sqlx::Row::try_get(&found, 0))
        .map_err(store_error)
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
        let folded = rollups::folded(&mut self.0, id.as_uuid()).await?;
        rollups::refold(&mut self.0, id.as_uuid(), folded, -1).await?;
        let update = query(
            "UPDATE messages \
             SET status = $2, error_code = $3, error_message = $4, \
                 price_amount = COALESCE($5, price_amount), \
                 price_currency = COALESCE($6, price_currency), updated_at = $7 \
             WHERE id = $1 \
             RETURNING *",
            &params[..7],
        );
        let updated = one(update, &mut *self.0, rows::message).await?;
        query(
            "INSERT INTO message_events (message_id, status, error_code, error_message, \
             price_amount, price_currency, received_at, idempotency_token) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &params,
        )
        .execute(&mut *self.0)
        .await
        .map_err(store_error)?;
        rollups::refold(&mut self.0, id.as_uuid(), folded, 1).await?;
        Ok(updated)
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await.map_err(store_error)
    }
}
