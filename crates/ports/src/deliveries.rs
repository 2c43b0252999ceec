//! Judging a delivery report, once for every store: [`record_delivery`] decides, and a store's
//! [`DeliveryTransaction`] reads and writes its rows.

use std::future::Future;

use domain::{DeliveryEvent, Message, MessageId};

use crate::{DeliveryUpdate, StoreError};

/// The statements of [`crate::MessageStore::record_delivery`], all in one transaction that
/// holds the message's row from [`DeliveryTransaction::message`] until it commits, so that of
/// two reports arriving together the second judges the status the first one left. Dropping it
/// uncommitted changes nothing.
pub trait DeliveryTransaction: Send {
    /// The message the provider knows as `provider_sid`, its row held until the commit, and
    /// whether an event with `idempotency_token` was applied to it before (asked in the same
    /// reading: a receipt's transaction is a few round trips, each of them counts).
    fn message(
        &mut self,
        provider_sid: &str,
        idempotency_token: Option<&str>,
    ) -> impl Future<Output = Result<Option<Reported>, StoreError>> + Send;

    /// Moves message `id` to the event's status, its error replaced by the event's and its
    /// price by the event's when it has one, and adds the event to its history: the message as
    /// updated.
    fn apply(
        &mut self,
        id: MessageId,
        event: &DeliveryEvent,
        idempotency_token: Option<&str>,
    ) -> impl Future<Output = Result<Message, StoreError>> + Send;

    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The message a delivery report is about, as [`DeliveryTransaction::message`] found it.
#[derive(Debug)]
pub struct Reported {
    pub message: Message,
    /// An event with the report's idempotency token was applied before: the report is a repeat.
    pub repeated: bool,
}

/// [`crate::MessageStore::record_delivery`] in `transaction`.
pub async fn record_delivery(
    mut transaction: impl DeliveryTransaction,
    provider_sid: &str,
    event: DeliveryEvent,
    idempotency_token: Option<String>,
) -> Result<DeliveryUpdate, StoreError> {
    let Some(Reported { message, repeated }) = transaction
        .message(provider_sid, idempotency_token.as_deref())
        .await?
    else {
        return Ok(DeliveryUpdate::UnknownMessage);
    };
    if repeated {
        return Ok(DeliveryUpdate::Duplicate(message));
    }
    if !message.status.can_transition_to(event.status) {
        return Ok(DeliveryUpdate::Ignored(message));
    }
    let updated = transaction
        .apply(message.id, &event, idempotency_token.as_deref())
        .await?;
    transaction.commit().await?;
    Ok(DeliveryUpdate::Applied(updated))
}
