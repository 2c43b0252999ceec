//! What happens to a message after the provider accepted it: its price, and the delivery events
//! the carrier reports back through the provider's status callbacks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::MessageStatus;

/// What a message cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    /// The amount spent, positive whatever the provider's sign (Twilio's `-0.00750` is
    /// `0.0075`): a decimal [`Amount`](crate::Amount) reads, kept as text so that no rounding
    /// happens before a report sums it.
    pub amount: String,
    /// ISO 4217 (`USD`).
    pub currency: String,
}

/// One status report about a sent message, from the carrier through the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEvent {
    /// The status the report moves the message to, when [`MessageStatus::can_transition_to`]
    /// allows it; otherwise the report changes nothing.
    pub status: MessageStatus,
    /// The provider's error code (Twilio's `30003`) when the message was not delivered.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub price: Option<Price>,
    pub received_at: DateTime<Utc>,
}
