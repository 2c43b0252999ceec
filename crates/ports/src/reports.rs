//! Reading the message history back: a client's message list, the usage reports, and the
//! counts behind the metrics. Everything is aggregated by the database; nothing here loads rows
//! to count them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Amount, Attempt, Channel, Message, MessageId, MessageStatus, PhoneNumber};

use crate::StoreError;

/// Where a page of the message list ends: the next page holds the messages strictly older,
/// in `(created_at, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    pub created_at: DateTime<Utc>,
    pub id: MessageId,
}

/// One API key's messages, newest first, narrowed by the optional filters.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFilter {
    pub api_key: String,
    pub status: Option<MessageStatus>,
    pub to: Option<PhoneNumber>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    pub before: Option<MessageCursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    /// The UTC day of creation, `YYYY-MM-DD`.
    Day,
    Template,
    /// The destination's ISO 3166 country.
    Country,
    Status,
    ApiKey,
}

impl UsageGrouping {
    /// The SQL expression a report groups by, chosen from a closed list, never built from
    /// input; `day` is the store's expression for the UTC day of `created_at`.
    pub fn column(self, day: &'static str) -> &'static str {
        match self {
            UsageGrouping::Day => day,
            UsageGrouping::Template => "template",
            UsageGrouping::Country => "country",
            UsageGrouping::Status => "status",
            UsageGrouping::ApiKey => "api_key",
        }
    }
}

/// Messages created in `[since, until)`, in groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub group_by: UsageGrouping,
    /// Only this API key's messages (a client's own report); `None`: every key's (an admin key,
    /// the operator).
    pub api_key: Option<String>,
}

/// The totals of one group. `key` is `None` for messages without a value for the grouping
/// (a plain body has no template; a country the library could not tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub key: Option<String>,
    pub messages: u64,
    pub segments: u64,
    pub delivered: u64,
    /// `failed` or `undelivered`.
    pub failed: u64,
}

/// What a group's messages cost in one currency: the sum of their prices, each an amount spent
/// (positive whatever the provider's sign). A price a store cannot read counts nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostSum {
    pub key: Option<String>,
    pub currency: String,
    pub total: Amount,
}

/// How many messages of a group ended with an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodeCount {
    pub key: Option<String>,
    pub code: String,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    pub status: MessageStatus,
    pub channel: Channel,
    pub count: u64,
}

/// The queue as the dispatchers of every instance share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages `queued` or `sending`.
    pub depth: u64,
    /// Creation time of the oldest `queued` message.
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// The message history, read back for clients and operators.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MessageReports: Send + Sync {
    /// At most `filter.limit` messages matching `filter`, newest first (by `created_at`, then
    /// `id`).
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError>;

    /// The attempts of each of `ids`, oldest first within a message.
    async fn attempts_of(&self, ids: &[MessageId])
        -> Result<Vec<(MessageId, Attempt)>, StoreError>;

    /// One group per distinct key among the messages of the range, ordered by key (`None`
    /// first).
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageGroup>, StoreError>;

    /// Per group, each error code of the range's messages and how many carry it, most frequent
    /// first within a group.
    async fn error_codes(&self, query: &UsageQuery) -> Result<Vec<ErrorCodeCount>, StoreError>;

    /// Per group and currency, the sum of the range's message prices (messages without a
    /// price count nothing), ordered by key (`None` first), then currency.
    async fn costs(&self, query: &UsageQuery) -> Result<Vec<CostSum>, StoreError>;

    /// Every stored message counted by status and channel (only pairs that occur).
    async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError>;

    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;
}

/// Whether the database can serve: reachable, and its schema migrated to what this build
/// expects.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database cannot be reached.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// How many of this build's migrations the database lacks (0 when ready).
    async fn pending_migrations(&self) -> Result<usize, StoreError>;
}
