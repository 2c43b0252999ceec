//! Erasure of one phone number's data on its owner's request (`DELETE /v1/numbers/{e164}`,
//! `sms-notify erase`): every message, attempt, delivery event, verification, code and fraud
//! decision to the number, of every API key, while the usage report keeps its counts.
//!
//! Pending verifications are canceled first, so that no code of them approves anything while
//! the rest goes; the store then removes everything in one transaction. A message in flight at
//! that moment may still reach the provider, but its finish finds its claim gone and stores
//! nothing again. The log names the number by its masked form and a keyed tag only.

use ports::{Removed, StoreError};

use crate::usecases::Services;
use domain::PhoneNumber;

/// What an erasure removed, per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// Verifications that were pending and were canceled before they were removed.
    pub canceled_verifications: u64,
    pub removed: Removed,
}

impl Services {
    /// Erases `number`'s data for `admin` (an API key's name, or the CLI's), across every key.
    pub async fn erase_number(
        &self,
        admin: &str,
        number: &PhoneNumber,
    ) -> Result<Erasure, StoreError> {
        let canceled_verifications = self
            .lifecycle
            .cancel_verifications_to(number, self.clock.now())
            .await?;
        let removed = self.lifecycle.erase_number(number).await?;
        for (kind, count) in removed.kinds() {
            self.metrics.data_removed(kind, "erasure", count);
        }
        tracing::info!(
            admin,
            to = %number.masked(),
            number_tag = %self.hasher.number_tag(number),
            canceled_verifications,
            messages = removed.messages,
            attempts = removed.attempts,
            delivery_events = removed.delivery_events,
            verifications = removed.verifications,
            verification_codes = removed.verification_codes,
            fraud_decisions = removed.fraud_decisions,
            "erased a number's data"
        );
        Ok(Erasure {
            canceled_verifications,
            removed,
        })
    }
}
