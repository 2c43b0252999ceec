//! The fraud guard's admin side: what an operator sees and changes by hand, for
//! `/v1/fraud/blocks`, `/v1/fraud/safe-list`, `/v1/fraud/decisions` and `sms-notify fraud`.
//!
//! The guard blocks prefixes and heals them by itself; an admin needs to see why, lift a block
//! the guard got wrong, block a range reported by a carrier before the guard finds it, and keep
//! known numbers (test phones, a partner's range) out of its reach. Every change goes to the
//! shared store, so it reaches every instance at its next read, and is logged with the admin
//! key's name.

use chrono::{DateTime, SubsecRound as _, Utc};
use domain::fraud::{Block, BlockPeriod, Prefix};
use ports::{Clock, DecisionFilter, LoggedDecision, SafeEntry, StoreError};

use crate::usecases::Services;

/// Longest note an admin may attach to a block or a safe-list entry: a ticket number or a
/// sentence, not a document.
pub const MAX_NOTE_CHARS: usize = 200;

/// What a manual block's reason says when the admin gives no note.
const DEFAULT_BLOCK_DETAIL: &str = "blocked by hand";

/// An admin's words beside a block or a safe-list entry: at most [`MAX_NOTE_CHARS`] characters,
/// one line, trimmed. An empty note is no note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNote {
    #[error("a note is at most {MAX_NOTE_CHARS} characters")]
    TooLong,
    #[error("a note is one line of text, without control characters")]
    ControlCharacter,
}

impl Note {
    /// `None` for a blank text.
    pub fn parse(text: &str) -> Result<Option<Self>, InvalidNote> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.chars().count() > MAX_NOTE_CHARS {
            return Err(InvalidNote::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidNote::ControlCharacter);
        }
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A block placed by hand: on `prefix`, until `period` has passed from now, or until lifted
/// when there is none.
#[derive(Debug, Clone)]
pub struct ManualBlock {
    pub prefix: Prefix,
    pub note: Option<Note>,
    pub period: Option<BlockPeriod>,
}

/// Now, to the microsecond both stores keep: what an answer shows is what a list shows later.
fn stored_now(clock: &dyn Clock) -> DateTime<Utc> {
    clock.now().trunc_subsecs(6)
}

impl Services {
    /// Every block in force now, by prefix: the guard's and the admins'.
    pub async fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.fraud.blocks(self.clock.now()).await
    }

    /// Places `request` for `admin` (an API key's name), replacing whatever block its prefix
    /// held: the guard's (which it then never overrides) or an earlier one by hand. Its reason
    /// is `manual_block`, saying who placed it and the note.
    pub async fn block_prefix(
        &self,
        admin: &str,
        request: ManualBlock,
    ) -> Result<Block, StoreError> {
        let now = stored_now(self.clock.as_ref());
        let detail = match &request.note {
            Some(note) => format!("{DEFAULT_BLOCK_DETAIL} by {admin}: {}", note.as_str()),
            None => format!("{DEFAULT_BLOCK_DETAIL} by {admin}"),
        };
        let expires_at = request.period.map(|period| now + period.duration());
        let block = Block::manual(request.prefix, detail, now, expires_at);
        // A block by hand replaces anything: the store places it whatever is in force.
        self.fraud.place_block(&block).await?;
        tracing::info!(
            prefix = %block.prefix,
            admin,
            expires_at = ?block.expires_at,
            "fraud block placed by hand"
        );
        Ok(block)
    }

    /// Lifts the block in force on exactly `prefix` (not a longer or shorter one). Whether
    /// there was one.
    pub async fn unblock_prefix(&self, admin: &str, prefix: &Prefix) -> Result<bool, StoreError> {
        let lifted = self.fraud.unblock(prefix, self.clock.now()).await?;
        if lifted {
            tracing::info!(%prefix, admin, "fraud block lifted by hand");
        }
        Ok(lifted)
    }

    /// The safe list, by prefix.
    pub async fn fraud_safe_list(&self) -> Result<Vec<SafeEntry>, StoreError> {
        self.fraud.safe_list().await
    }

    /// Puts `prefix` (a range or a whole number) on the safe list, or replaces its note.
    pub async fn add_safe_prefix(
        &self,
        admin: &str,
        prefix: Prefix,
        note: Option<Note>,
    ) -> Result<SafeEntry, StoreError> {
        let entry = SafeEntry {
            prefix,
            note: note.map(|note| note.0),
            added_at: stored_now(self.clock.as_ref()),
        };
        self.fraud.add_safe(&entry).await?;
        tracing::info!(prefix = %entry.prefix, admin, "safe-list entry added");
        Ok(entry)
    }

    /// Takes exactly `prefix` off the safe list. Whether it was on it.
    pub async fn remove_safe_prefix(
        &self,
        admin: &str,
        prefix: &Prefix,
    ) -> Result<bool, StoreError> {
        let removed = self.fraud.remove_safe(prefix).await?;
        if removed {
            tracing::info!(%prefix, admin, "safe-list entry removed");
        }
        Ok(removed)
    }

    /// A page of the decision log, newest first.
    pub async fn fraud_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<LoggedDecision>, StoreError> {
        self.fraud.decisions(filter).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, TimeDelta, Utc};
    use domain::fraud::ReasonCode;
    use ports::{MockClock, MockFraudStore};

    use super::*;
    use crate::usecases::codes::CodeHasher;
    use crate::usecases::StorePorts;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn services(fraud: MockFraudStore) -> Services {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let stores = StorePorts {
            messages: Arc::new(ports::MockMessageStore::new()),
            verifications: Arc::new(ports::MockVerificationStore::new()),
            reports: Arc::new(ports::MockMessageReports::new()),
            health: Arc::new(ports::MockStoreHealth::new()),
            limiter: Arc::new(ports::MockRateLimiter::new()),
            fraud: Arc::new(fraud),
            verify_services: Arc::new(ports::MockVerifyServiceStore::new()),
            webhooks: Arc::new(ports::MockWebhookStore::new()),
            workflows: Arc::new(ports::MockWorkflowStore::new()),
            lifecycle: Arc::new(ports::MockDataLifecycle::new()),
        };
        Services::builder(
            stores,
            Arc::new(template::Templates::built_in().unwrap()),
            CodeHasher::new(secrecy::SecretString::from(
                "test-pepper-0123456789abcdef0123456789".to_owned(),
            )),
        )
        .clock(Arc::new(clock))
        .build()
    }

    fn prefix() -> Prefix {
        Prefix::parse("+447700900").unwrap()
    }

    #[tokio::test]
    async fn a_block_by_hand_names_its_admin_and_note_and_lasts_its_period() {
        let mut fraud = MockFraudStore::new();
        fraud
            .expect_place_block()
            .times(1)
            .withf(|block| {
                block.is_manual()
                    && block.prefix == prefix()
                    && block.reasons[0].code == ReasonCode::ManualBlock
                    && block.reasons[0].detail == "blocked by hand by ops: carrier report #12"
                    && block.created_at == now()
                    && block.expires_at == Some(now() + TimeDelta::hours(24))
            })
            .returning(|_| Ok(true));
        let block = services(fraud)
            .block_prefix(
                "ops",
                ManualBlock {
                    prefix: prefix(),
                    note: Note::parse(" carrier report #12 ").unwrap(),
                    period: Some(BlockPeriod::hours(24).unwrap()),
                },
            )
            .await
            .unwrap();
        assert_eq!(block.retry_after(now()), Some(TimeDelta::hours(24)));
    }

    #[tokio::test]
    async fn a_block_by_hand_without_a_period_lasts_until_lifted() {
        let mut fraud = MockFraudStore::new();
        fraud
            .expect_place_block()
            .times(1)
            .withf(|block| {
                block.expires_at.is_none() && block.reasons[0].detail == "blocked by hand by ops"
            })
            .returning(|_| Ok(true));
        let block = services(fraud)
            .block_prefix(
                "ops",
                ManualBlock {
                    prefix: prefix(),
                    note: None,
                    period: None,
                },
            )
            .await
            .unwrap();
        assert!(block.is_active(now() + TimeDelta::days(365)));
    }

    #[test]
    fn a_note_is_one_trimmed_line_of_at_most_200_characters() {
        assert_eq!(Note::parse("   "), Ok(None));
        assert_eq!(
            Note::parse(" test phones ").unwrap().unwrap().as_str(),
            "test phones"
        );
        assert!(Note::parse(&"é".repeat(MAX_NOTE_CHARS)).unwrap().is_some());
        assert_eq!(
            Note::parse(&"a".repeat(MAX_NOTE_CHARS + 1)),
            Err(InvalidNote::TooLong)
        );
        assert_eq!(
            Note::parse("two\nlines"),
            Err(InvalidNote::ControlCharacter)
        );
    }
}
