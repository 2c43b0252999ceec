//! Data that ages: what retention removes in batches, what an erasure removes for one number,
//! and the lease that keeps a job on one instance at a time. Both stores fold the messages they
//! remove into the usage report's rollups in the transaction that deletes them, so that
//! reports over removed periods keep their counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::PhoneNumber;

use crate::StoreError;

/// The kinds of stored rows that age out, in the order retention removes them. A new table
/// whose rows hold personal data (a client webhook's events, say) is one more variant here,
/// one more arm in each store's `remove_expired` and, if it names the number, in
/// `erase_number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retained {
    /// Messages that left the queue (with their attempts and delivery events), folded into the
    /// rollups first. A message still `queued` or `sending` is never removed.
    Messages,
    /// Verifications, whatever their status (a verification lives minutes), with their codes.
    Verifications,
    /// The fraud guard's decision log, which names the number.
    FraudDecisions,
}

impl Retained {
    pub const ALL: [Retained; 3] = [
        Retained::Messages,
        Retained::Verifications,
        Retained::FraudDecisions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Retained::Messages => "messages",
            Retained::Verifications => "verifications",
            Retained::FraudDecisions => "fraud_decisions",
        }
    }
}

/// Rows removed, per kind. The children (attempts, delivery events, codes) are counted apart
/// from the rows they hung off, so that an erasure can say exactly what went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub messages: u64,
    pub attempts: u64,
    pub delivery_events: u64,
    pub verifications: u64,
    pub verification_codes: u64,
    pub fraud_decisions: u64,
}

impl Removed {
    /// Every row counted, whatever its kind.
    pub fn rows(&self) -> u64 {
        self.kinds().iter().map(|(_, count)| count).sum()
    }

    /// Each kind's name and count, for logs and metrics.
    pub fn kinds(&self) -> [(&'static str, u64); 6] {
        [
            ("messages", self.messages),
            ("attempts", self.attempts),
            ("delivery_events", self.delivery_events),
            ("verifications", self.verifications),
            ("verification_codes", self.verification_codes),
            ("fraud_decisions", self.fraud_decisions),
        ]
    }

    pub fn add(&mut self, other: Removed) {
        self.messages += other.messages;
        self.attempts += other.attempts;
        self.delivery_events += other.delivery_events;
        self.verifications += other.verifications;
        self.verification_codes += other.verification_codes;
        self.fraud_decisions += other.fraud_decisions;
    }
}

/// Who holds a job's lease: opaque, chosen by the instance at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseHolder(pub u128);

/// The stored data's lifecycle: retention in batches, erasure of one number, job leases.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails; a batch that failed removed nothing.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DataLifecycle: Send + Sync {
    /// Takes (or, for its holder, extends) the lease of `job` until `until` when no other
    /// holder's lease runs past `now`. Returns whether `holder` holds it.
    async fn take_lease(
        &self,
        job: &str,
        holder: LeaseHolder,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Gives the lease of `job` up, if `holder` holds it, so that the next instance need not
    /// wait for it to run out.
    async fn release_lease(&self, job: &str, holder: LeaseHolder) -> Result<(), StoreError>;

    /// Removes at most `limit` rows of `kind` created before `before` (oldest first), with what
    /// hangs off them, folding removed messages into the rollups in the same transaction. A
    /// store that keeps rows in partitions (PostgreSQL's weeks) also drops, in the same call,
    /// the partitions wholly older than `before`, folded alike and counted beside the batch.
    async fn remove_expired(
        &self,
        kind: Retained,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Removed, StoreError>;

    /// Creates, where missing, the partitions that the rows with ids minted in the coming weeks
    /// go into (a store without partitions has nothing to do); answers how many it created. Ids
    /// carry the real time they were minted at, so this follows the real clock, whatever clock
    /// the caller runs on.
    async fn prepare_partitions(&self) -> Result<u64, StoreError>;

    /// Empties the bodies of at most `limit` messages created before `before` that are not
    /// sensitive (those are emptied when they leave the queue) and no longer queued or in
    /// flight. Returns how many it emptied.
    async fn empty_bodies(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Cancels every pending verification to `to`, of any API key, at `now`: no code of them
    /// approves any more and none of their messages is sent. Returns how many.
    async fn cancel_verifications_to(
        &self,
        to: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Removes every message (queued and in flight included: a dispatcher's finish then finds
    /// its claim gone and records nothing), attempt, delivery event, verification, code and
    /// fraud decision to `to`, of every API key, in one transaction, folding the messages into
    /// the rollups first.
    async fn erase_number(&self, to: &PhoneNumber) -> Result<Removed, StoreError>;

    /// Folds the hours from the rollups' watermark up to the last clean one
    /// ([`crate::rollups::fold_target`] with `settle`) into the rollups, at most `max_hours` of
    /// them, in one transaction, set-based (one grouping statement per rollup over the hours),
    /// and moves the watermark past them. Only folded hours' rows change the rollups later (a
    /// delivery receipt) or leave the raw tables without a fold of their own.
    async fn fold_rollups(
        &self,
        now: DateTime<Utc>,
        settle: chrono::TimeDelta,
        max_hours: u32,
    ) -> Result<crate::FoldStep, StoreError>;

    /// Every hour before it is in the rollups; `None` before the first fold.
    async fn rollup_watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}
