//! The ports of the hexagon: what the use cases need from the outside world, as async traits
//! that speak only domain types.
//!
//! Adapters (`adapters-*`) implement these traits; `app` wires them together. This crate must
//! never depend on an adapter, a database driver, an HTTP client or a web framework. With the
//! `mocks` feature every trait has a mockall mock; with `testkit`, the conformance tests that
//! every store adapter must pass.

mod budget;
mod clock;
mod deliveries;
mod fraud;
mod lifecycle;
pub mod params;
mod provider;
mod rate_limit;
mod reports;
pub mod rollups;
pub mod rows;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
mod verify_services;
mod wakeups;
mod webhooks;
mod workflows;

pub use budget::{
    dispatch_order, Allowance, ClaimBudget, ClaimLimit, Claimed, SenderRate, SEND_HORIZON,
};
pub use clock::{Clock, CodeGenerator};
pub use deliveries::{record_delivery, DeliveryTransaction, Reported};
pub use domain::Price;
pub use fraud::{
    messages_reserved_for, spend_to_give_back, DecisionCursor, DecisionFilter, FraudStore,
    LoggedDecision, ReservedSpend, SafeEntry, SpendReservation,
};
pub use lifecycle::{DataLifecycle, LeaseHolder, Removed, Retained};
pub use provider::{
    OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt, SentMessageSearch,
    SmsProvider, StatusLookup,
};
pub use rate_limit::{Admission, RateLimit, RateLimiter};
pub use reports::{
    conversion_groups, latency_bucket_sql, ConversionCount, ConversionGroup, ConversionGrouping,
    ConversionQuery, CostSum, ErrorCodeCount, HourFigures, Latency, LatencyCount, MessageCursor,
    MessageFilter, MessageReports, QueueStats, StatusCount, StoreHealth, UsageGroup, UsageGrouping,
    UsageQuery,
};
pub use rollups::FoldStep;
pub use store::{
    stored_queued, ClaimToken, ClaimedMessage, DeliveryUpdate, DispatchOutcome, Enqueued, Finish,
    MessageStore, OutcomeColumns, StoreError, VerificationCursor, VerificationFilter,
    VerificationStore,
};
pub use verify_services::{VerifyService, VerifyServiceStore};
pub use wakeups::{QueueWakeups, Wakeup};
pub use webhooks::{
    ClaimedDelivery, DeliveryAnswer, DeliveryResult, FailingDelivery, NewEvent, StoredEvent,
    WebhookEndpoint, WebhookStore,
};
pub use workflows::{DueStep, StepTaken, WorkflowStore};

#[cfg(feature = "mocks")]
pub use clock::{MockClock, MockCodeGenerator};
#[cfg(feature = "mocks")]
pub use fraud::MockFraudStore;
#[cfg(feature = "mocks")]
pub use lifecycle::MockDataLifecycle;
#[cfg(feature = "mocks")]
pub use provider::{MockSentMessageSearch, MockSmsProvider, MockStatusLookup};
#[cfg(feature = "mocks")]
pub use rate_limit::MockRateLimiter;
#[cfg(feature = "mocks")]
pub use reports::{MockMessageReports, MockStoreHealth};
#[cfg(feature = "mocks")]
pub use store::{MockMessageStore, MockVerificationStore};
#[cfg(feature = "mocks")]
pub use verify_services::MockVerifyServiceStore;
#[cfg(feature = "mocks")]
pub use wakeups::MockQueueWakeups;
#[cfg(feature = "mocks")]
pub use webhooks::MockWebhookStore;
#[cfg(feature = "mocks")]
pub use workflows::MockWorkflowStore;
