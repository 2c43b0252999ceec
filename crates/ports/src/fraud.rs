//! The fraud guard's shared state: the signals every instance counts (codes sent, refused,
//! checked, approved, per hour and key), the blocks it places, the safe list and the decision
//! log. All of it lives in the database so that instances judge alike, and an admin's change
//! reaches every instance at its next read.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::budget::{SpendCap, SpendScope};
use domain::fraud::{
    Action, Block, CodeCounts, CodeEvent, Decision, Mode, Policy, Prefix, SignalKey,
};
use domain::{Amount, MessageId, PhoneNumber, VerificationId};
use uuid::Uuid;

use crate::StoreError;

/// A safe-list entry: a whole number or a prefix the guard never blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeEntry {
    pub prefix: Prefix,
    /// Why it is there, in the admin's words.
    pub note: Option<String>,
    pub added_at: DateTime<Utc>,
}

/// One decision of the guard, as the log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedDecision {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub to: PhoneNumber,
    pub api_key: String,
    pub client_ip: Option<String>,
    /// The calling service's id of its user (`POST /v1/verifications`'s `user_id`).
    pub user_id: Option<String>,
    /// Whether the calling service vouched for the user (`trusted`).
    pub trusted: bool,
    /// The verification the request started or reused, when a code went.
    pub verification_id: Option<VerificationId>,
    pub decision: Decision,
}

/// Where a page of the decision log ends: the last entry of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionCursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// A page of the decision log, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionFilter {
    pub action: Option<Action>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    pub before: Option<DecisionCursor>,
    pub limit: u32,
}

/// The fraud guard's signals and state, shared by every instance.
///
/// The hot path is [`FraudStore::count_code`], once per code: one write (a batched upsert)
/// whatever the number of keys. Reads are meant to be cached by the caller for about a second:
/// [`FraudStore::code_counts`] of the keys of a request, [`FraudStore::blocks`] and
/// [`FraudStore::safe_list`] whole.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails; [`StoreError::Corrupt`] when a stored
/// row does not read back.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait FraudStore: Send + Sync {
    /// Counts `event` once for each of `keys` in the hour `asked_at` is in (the hour the code
    /// was asked for, also for a check or an approval that comes later), as one write.
    async fn count_code(
        &self,
        event: CodeEvent,
        keys: &[SignalKey],
        asked_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The hourly counts of each of `keys`, for the hours starting at or after `since`, by key
    /// then oldest first; hours without codes are left out.
    async fn code_counts(
        &self,
        keys: &[SignalKey],
        since: DateTime<Utc>,
    ) -> Result<Vec<(SignalKey, CodeCounts)>, StoreError>;

    /// Forgets the counts of the hours starting before `before` (older than any baseline);
    /// how many hourly rows went.
    async fn forget_counts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Places `block`, replacing whatever its prefix held before, unless a block is in force on
    /// the prefix at `block.created_at` and `block` is the guard's (not [`Block::is_manual`]):
    /// instances that find the same bad traffic at once place one block, and the guard never
    /// overrides an admin's. Whether `block` was placed.
    async fn place_block(&self, block: &Block) -> Result<bool, StoreError>;

    /// Renews the guard's block on `block.prefix` to `block`'s codes, renewal time and expiry,
    /// if it is still in force at `block.renewed_at` (neither healed nor lifted by an admin
    /// meanwhile). Whether it was renewed.
    async fn renew_block(&self, block: &Block) -> Result<bool, StoreError>;

    /// Lifts the block in force on exactly `prefix` at `now`. Whether there was one.
    async fn unblock(&self, prefix: &Prefix, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Every block in force at `now`, by prefix.
    async fn blocks(&self, now: DateTime<Utc>) -> Result<Vec<Block>, StoreError>;

    /// Adds `entry` to the safe list, or replaces the note and time of its prefix's entry.
    async fn add_safe(&self, entry: &SafeEntry) -> Result<(), StoreError>;

    /// Removes exactly `prefix` from the safe list. Whether it was on it.
    async fn remove_safe(&self, prefix: &Prefix) -> Result<bool, StoreError>;

    /// The safe list, by prefix.
    async fn safe_list(&self) -> Result<Vec<SafeEntry>, StoreError>;

    /// Appends a decision to the log.
    async fn log_decision(&self, decision: &LoggedDecision) -> Result<(), StoreError>;

    /// A page of the log, newest first (by time, then id).
    async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<LoggedDecision>, StoreError>;

    /// The modes an admin set at run time, by policy; those never set are left out (the
    /// configuration's stand). Read by every instance, cached for about a second.
    async fn policy_modes(&self) -> Result<Vec<(Policy, Mode)>, StoreError>;

    /// Sets `policy`'s mode at `now`, replacing what an admin set before.
    async fn set_policy_mode(
        &self,
        policy: Policy,
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Reserves `amount` of the spend of `day` under every one of `caps` for `message`, in
    /// one transaction: either each scope's spend grows by `amount` without passing its cap
    /// (its spend after, in the order of `caps`) and the reservation is kept under `message`,
    /// or none grows and the first scope that has no room is named. Concurrent reservations
    /// from any instance never take a scope past its cap.
    async fn reserve_spend(
        &self,
        day: NaiveDate,
        caps: &[SpendCap],
        amount: Amount,
        message: MessageId,
    ) -> Result<SpendReservation, StoreError>;

    /// Gives back what was reserved for `message`, whatever became of it: for a message that
    /// was never stored (its request lost to an idempotent twin, or its write failed).
    /// Whether there was a reservation; a second call finds none.
    async fn release_spend(&self, message: MessageId) -> Result<bool, StoreError>;

    /// Settles the reservations of the messages that have left the queue: a message that
    /// ended `failed` or `expired` without a provider taking it (no provider id) cost nothing,
    /// and its reservation is given back; any other keeps its spend. Either way the
    /// reservation is forgotten, so each is settled once, also by instances settling at once.
    /// How many messages' reservations were given back.
    async fn settle_spend(&self) -> Result<u64, StoreError>;

    /// What providers charged, in `currency`, for the messages to `country` queued at or after
    /// `since` that have a stored price: the sum of their prices and of their segments, summed
    /// exactly as the usage reports sum them. `(0, 0)` when none has.
    async fn charged_since(
        &self,
        country: &str,
        currency: &str,
        since: DateTime<Utc>,
    ) -> Result<(Amount, u64), StoreError>;
}

/// What [`FraudStore::reserve_spend`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendReservation {
    /// Reserved: each cap's spend of the day after it, in the order of the caps.
    Reserved(Vec<Amount>),
    /// Nothing reserved: this scope's spend, `spent`, has no room for the amount.
    Exhausted { scope: SpendScope, spent: Amount },
}

/// A reservation as a store reads it back: its message's id as text, day (`YYYY-MM-DD`), scope key and
/// amount in units of the budget's currency.
pub type ReservedSpend = (String, String, String, i64);

/// What giving `reservations` back takes from each day's scope, summed, in the order every
/// reservation locks its scopes (the total, then API keys, then countries), so that a
/// give-back and a reservation never wait for each other in a circle.
pub fn spend_to_give_back(reservations: &[ReservedSpend]) -> Vec<(String, String, i64)> {
    let mut sums: std::collections::BTreeMap<(u8, String, String), i64> =
        std::collections::BTreeMap::new();
    for (_, day, scope, amount) in reservations {
        let rank = if scope == "total" {
            0
        } else if scope.starts_with("api_key:") {
            1
        } else {
            2
        };
        let sum = sums.entry((rank, scope.clone(), day.clone())).or_default();
        *sum = sum.saturating_add(*amount);
    }
    sums.into_iter()
        .map(|((_, scope, day), amount)| (day, scope, amount))
        .collect()
}

/// How many messages `reservations` were made for.
pub fn messages_reserved_for(reservations: &[ReservedSpend]) -> u64 {
    let messages: std::collections::HashSet<&str> = reservations
        .iter()
        .map(|(message, ..)| message.as_str())
        .collect();
    messages.len() as u64
}
