//! An operator's reads across every API key, for the dashboard: one message or verification
//! with everything that happened to it (attempts, channels, receipts, the fraud guard's
//! decision, the events sent to the client), and the key names to search under. Only admin
//! sessions reach them; the API's own reads stay within the caller's key.

use domain::webhook::EndpointId;
use domain::workflow::VerificationAttempt;
use domain::{Attempt, Message, MessageId, Verification, VerificationId};
use ports::{FailingDelivery, StoreError, StoredEvent, WebhookEndpoint};

use crate::providers::failover::{CircuitBoard, ProviderCircuit};
use crate::usecases::Services;

/// A message and what happened to it.
#[derive(Debug)]
pub struct MessageHistory {
    pub message: Message,
    pub attempts: Vec<Attempt>,
    /// The events the client's webhooks were sent about it, oldest first.
    pub events: Vec<StoredEvent>,
}

/// A verification and what happened to it.
#[derive(Debug)]
pub struct VerificationHistory {
    pub verification: Verification,
    /// Its codes, one per step or resend: channel, provider, receipts, which approved.
    pub attempts: Vec<VerificationAttempt>,
    pub events: Vec<StoredEvent>,
}

impl Services {
    /// Every API key's name, and whether it is an admin key, in configuration order.
    pub fn api_key_names(&self) -> Vec<(&str, bool)> {
        self.api_keys
            .all()
            .map(|key| (key.name(), key.is_admin()))
            .collect()
    }

    /// The message `id`, whichever key sent it.
    pub async fn message_history(
        &self,
        id: MessageId,
    ) -> Result<Option<MessageHistory>, StoreError> {
        let Some(message) = self.messages.get(id).await? else {
            return Ok(None);
        };
        let attempts = self.messages.attempts(id).await?;
        let events = self.webhooks.events_of(id.as_uuid()).await?;
        Ok(Some(MessageHistory {
            message,
            attempts,
            events,
        }))
    }

    /// The verification `id`, whichever key started it.
    pub async fn verification_history(
        &self,
        id: VerificationId,
    ) -> Result<Option<VerificationHistory>, StoreError> {
        let Some(verification) = self.verifications.get(id).await? else {
            return Ok(None);
        };
        let attempts = self.workflows.verification_attempts(id).await?;
        let events = self.webhooks.events_of(id.as_uuid()).await?;
        Ok(Some(VerificationHistory {
            verification,
            attempts,
            events,
        }))
    }

    /// Every key's webhook endpoints, oldest first.
    pub async fn all_webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.webhooks.endpoints(None).await
    }

    /// Up to `limit` of an endpoint's deliveries whose last attempt failed, newest first.
    pub async fn failing_deliveries(
        &self,
        endpoint: EndpointId,
        limit: u32,
    ) -> Result<Vec<FailingDelivery>, StoreError> {
        self.webhooks.failing_deliveries(endpoint, limit).await
    }

    /// Each provider's circuit in this instance, in failover order; empty with one provider,
    /// which has none.
    pub fn provider_circuits(&self) -> Vec<ProviderCircuit> {
        self.circuits
            .as_ref()
            .map(CircuitBoard::read)
            .unwrap_or_default()
    }
}
