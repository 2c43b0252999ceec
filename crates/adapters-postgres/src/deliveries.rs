//! Delivery events from the provider's status callbacks, on PostgreSQL: the statements that
//! `ports::record_delivery` judges with.

use domain::{DeliveryEvent, Message, MessageId};
use ports::params::{self, Param};
use ports::rows::StoredRow;
use ports::{rows, DeliveryTransaction, Reported, StoreError};
use sqlx::{Postgres, Transaction};

use crate::rollups::{self, Folded};
use crate::rows::{one, optional, query, store_error, Pg};
use crate::PgStore;

/// A delivery report's transaction: `FOR UPDATE` holds the message's row until the commit;
/// what of it lies in folded hours is read with it.
pub(crate) struct Delivery {
    transaction: Transaction<'static, Postgres>,
    /// Set by [`DeliveryTransaction::message`], for `apply`.
    folded: Folded,
}

impl Delivery {
    /// Begins with the rollups' lock held shared, in the same round trip: the statements
    /// after it then see the watermark as the last fold left it.
    pub(crate) async fn begin(store: &PgStore) -> Result<Self, StoreError> {
        let transaction = store
            .pool
            .begin_with(rollups::BEGIN_HOLDING_SHARED)
            .await
            .map_err(store_error)?;
        Ok(Self {
            transaction,
            folded: Folded::default(),
        })
    }
}

impl DeliveryTransaction for Delivery {
    async fn message(
        &mut self,
        provider_sid: &str,
        token: Option<&str>,
    ) -> Result<Option<Reported>, StoreError> {
        let locked = query(
            "SELECT m.*, \
                    EXISTS (SELECT 1 FROM message_events e \
                        WHERE e.message_id = m.id AND e.idempotency_token = $2) AS repeated, \
                    m.created_at < w.folded_until AS folded_message, \
                    (SELECT v.id FROM verifications v \
                     WHERE v.id = m.verification_id AND v.created_at < w.folded_until) \
                        AS folded_verification \
             FROM messages m, \
                  (SELECT (SELECT folded_until FROM rollup_watermark)) AS w (folded_until) \
             WHERE m.provider_sid = $1 \
             FOR UPDATE OF m",
            &[Param::text(provider_sid), Param::Text(token)],
        );
        let Some((reported, folded)) = optional(locked, &mut *self.transaction, found).await?
        else {
            return Ok(None);
        };
        self.folded = folded;
        Ok(Some(reported))
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
        let folded = self.folded;
        rollups::refold(&mut self.transaction, id.as_uuid(), folded, -1).await?;
        let update = query(
            "WITH updated AS ( \
                 UPDATE messages \
                 SET status = $2, error_code = $3, error_message = $4, \
                     price_amount = COALESCE($5, price_amount), \
                     price_currency = COALESCE($6, price_currency), updated_at = $7 \
                 WHERE id = $1 \
                 RETURNING *), \
             event AS ( \
                 INSERT INTO message_events (message_id, status, error_code, error_message, \
                     price_amount, price_currency, received_at, idempotency_token) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
             SELECT * FROM updated",
            &params,
        );
        let updated = one(update, &mut *self.transaction, rows::message).await?;
        rollups::refold(&mut self.transaction, id.as_uuid(), folded, 1).await?;
        Ok(updated)
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.transaction.commit().await.map_err(store_error)
    }
}

fn found(row: &Pg) -> Result<(Reported, Folded), StoreError> {
    let reported = Reported {
        message: rows::message(row)?,
        repeated: row.flag("repeated")?.unwrap_or(false),
    };
    let folded = Folded {
        message: row.flag("folded_message")?.unwrap_or(false),
        verification: row.id("folded_verification")?,
    };
    Ok((reported, folded))
}
