//! Reading the message history back: a client's message list, the usage reports, and the
//! counts behind the metrics. Everything is aggregated by the database; nothing here loads rows
//! to count them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::latency::LatencyHistogram;
use domain::{Amount, Attempt, Channel, Message, MessageId, MessageStatus, PhoneNumber};

use crate::StoreError;

/// Where a page of the message list ends: the next page holds the messages strictly older,
/// in `(created_at, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    pub created_at: DateTime<Utc>,
    pub id: MessageId,
}

/// Messages, newest first, narrowed by the optional filters.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFilter {
    /// One API key's messages; every key's with `None` (an operator's search by number).
    pub api_key: Option<String>,
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

/// What a conversion report groups verifications by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionGrouping {
    /// The UTC day the verification started, `YYYY-MM-DD`.
    Day,
    /// The ISO 3166 country of the number (its code messages').
    Country,
    Channel,
    /// The provider that accepted its first code sent.
    Provider,
    /// The number without its last five digits (the fraud guard's wide prefix).
    Prefix,
    ApiKey,
}

impl ConversionGrouping {
    /// The column of a store's started verifications a report groups by, from a closed list,
    /// never built from input; `day` is the store's expression for the UTC day of
    /// `created_at`.
    pub fn column(self, day: &'static str) -> &'static str {
        match self {
            ConversionGrouping::Day => day,
            ConversionGrouping::Country => "country",
            ConversionGrouping::Channel => "channel",
            ConversionGrouping::Provider => "provider",
            ConversionGrouping::Prefix => "prefix",
            ConversionGrouping::ApiKey => "api_key",
        }
    }
}

/// Verifications started in `[since, until)`, in groups, with the code messages they sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub group_by: ConversionGrouping,
    /// Only this API key's verifications; `None`: every key's.
    pub api_key: Option<String>,
}

impl ConversionQuery {
    /// The parameters of the store's statements: `since`, `until`, the API key or none.
    pub fn range(&self) -> [crate::params::Param<'_>; 3] {
        [
            crate::params::Param::time(self.since),
            crate::params::Param::time(self.until),
            crate::params::Param::Text(self.api_key.as_deref()),
        ]
    }
}

/// One group's verification funnel. `key` is `None` where the group has no value (a
/// verification none of whose codes a provider accepted has no provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionGroup {
    pub key: Option<String>,
    pub started: u64,
    /// Code messages a provider accepted (sent, delivered or undelivered).
    pub codes_sent: u64,
    pub approved: u64,
    /// From the start of each approved verification to its approval.
    pub to_approve: LatencyHistogram,
    /// From a code message's sending to its delivery receipt, for each delivered one.
    pub to_deliver: LatencyHistogram,
    /// What the code messages cost, per currency, ordered by currency.
    pub costs: Vec<(String, Amount)>,
}

/// A store's counts of one group, read before its latencies and costs join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionCount {
    pub key: Option<String>,
    pub started: u64,
    pub codes_sent: u64,
    pub approved: u64,
}

/// Which latency a bucket count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Start to approval (`approval` in a store's rows).
    ToApprove,
    /// Send to delivery receipt (`delivery`).
    ToDeliver,
}

impl Latency {
    pub fn as_str(self) -> &'static str {
        match self {
            Latency::ToApprove => "approval",
            Latency::ToDeliver => "delivery",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Latency::ToApprove, Latency::ToDeliver]
            .into_iter()
            .find(|latency| latency.as_str() == text)
    }
}

/// How many latencies of one kind a group has in one bucket of [`domain::latency::BOUNDS_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyCount {
    pub key: Option<String>,
    pub latency: Latency,
    pub bucket: usize,
    pub count: u64,
}

/// The SQL expression of the bucket a latency of `millis` (an SQL expression, in milliseconds)
/// falls in, as [`LatencyHistogram::bucket_of`] says: the same in both stores' dialects.
pub fn latency_bucket_sql(millis: &str) -> String {
    let mut sql = String::from("CASE");
    for (bucket, bound) in domain::latency::BOUNDS_MS.iter().enumerate() {
        sql.push_str(&format!(" WHEN {millis} < {bound} THEN {bucket}"));
    }
    sql.push_str(&format!(" ELSE {} END", domain::latency::BOUNDS_MS.len()));
    sql
}

/// Each group of `counts` (in their order) with its latencies and costs.
pub fn conversion_groups(
    counts: Vec<ConversionCount>,
    latencies: &[LatencyCount],
    costs: &[CostSum],
) -> Vec<ConversionGroup> {
    counts
        .into_iter()
        .map(|count| {
            let mut to_approve = LatencyHistogram::default();
            let mut to_deliver = LatencyHistogram::default();
            for latency in latencies.iter().filter(|latency| latency.key == count.key) {
                match latency.latency {
                    Latency::ToApprove => to_approve.add(latency.bucket, latency.count),
                    Latency::ToDeliver => to_deliver.add(latency.bucket, latency.count),
                }
            }
            let mut costs: Vec<(String, Amount)> = costs
                .iter()
                .filter(|cost| cost.key == count.key)
                .map(|cost| (cost.currency.clone(), cost.total))
                .collect();
            costs.sort();
            ConversionGroup {
                key: count.key,
                started: count.started,
                codes_sent: count.codes_sent,
                approved: count.approved,
                to_approve,
                to_deliver,
                costs,
            }
        })
        .collect()
}

/// One hour's figures for the overview's series: its messages as the usage report counts them
/// and its verifications as the conversion report counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourFigures {
    pub messages: u64,
    pub segments: u64,
    pub delivered: u64,
    /// `failed` or `undelivered`.
    pub failed: u64,
    pub started: u64,
    pub codes_sent: u64,
    pub approved: u64,
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

    /// One group per distinct key among the verifications started in the range, ordered by
    /// key (`None` first): their code messages a provider accepted, approvals, latencies and
    /// the code messages' prices per currency (summed as [`MessageReports::costs`] sums them).
    async fn conversion(&self, query: &ConversionQuery)
        -> Result<Vec<ConversionGroup>, StoreError>;

    /// Every hour of `[since, until)` (whole hours) that has messages or verifications, oldest
    /// first, every API key's: one aggregating statement for the messages and one for the
    /// verifications, on the rollups and the raw rows after them.
    async fn hourly(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, HourFigures)>, StoreError>;

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
