//! The service's Prometheus metrics, one registry per [`Metrics`] (no global state, so that
//! several services in one test process count apart).
//!
//! Counters count what this instance did. The message and queue gauges are read from the
//! shared database, so every instance reports the same values: aggregate them with `max`, not
//! `sum`. They are read at most once per [`GAUGE_READ_INTERVAL`], one read at a time, so that
//! however often `/metrics` is scraped it holds at most one database connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::fraud::{Action, ReasonCode};
use domain::{Channel, FallbackReason};
use ports::{
    MessageReports, OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt,
    SmsProvider, StoreError,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How long the database-backed gauges are reused before a scrape reads them again.
pub const GAUGE_READ_INTERVAL: Duration = Duration::from_secs(5);

/// The last read of the database-backed gauges.
struct GaugeRead {
    at: tokio::time::Instant,
    oldest_queued_at: Option<DateTime<Utc>>,
}

/// What `/metrics` answers with: the OpenMetrics text format, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// One of HTTP's own methods, or `other` (see [`method_label`]).
    method: String,
    /// The route's template (`/v1/messages/{id}`), never the raw path.
    route: String,
    status: u16,
    /// The name of the API key, empty when none authenticated.
    api_key: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    /// `sent`, `retryable_error` or `permanent_error`.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderNameLabels {
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderErrorLabels {
    provider: String,
    /// The provider's error code (Twilio: `21211`), or the HTTP status when it gave none.
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    status: String,
    channel: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FraudDecisionLabels {
    /// `allow`, `monitor` or `block`.
    action: String,
    /// One of the guard's reason codes, or `none` for a plain allow.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    /// `total`, `api_key` or `country`: never the key or the country itself.
    scope: String,
}

/// A fallback's channels (three values each) and reason (three values).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    from: String,
    to: String,
    reason: String,
}

/// Why a workflow's steps stopped early: a few fixed words, never a message's text.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StopLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    /// `delivered`, `retried`, `failed` or `refused`.
    outcome: String,
    /// The event type, one of a fixed few.
    event: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookDisabledLabels {
    /// `gone` or `failing`.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemovedLabels {
    /// `messages`, `attempts`, `delivery_events`, `verifications`, `verification_codes`,
    /// `fraud_decisions`, or `message_bodies` (emptied, not removed).
    kind: String,
    /// `retention` or `erasure`.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixLabels {
    prefix: String,
}

/// HTTP's own methods by name, any other `other`: a client may send whatever token it likes as
/// a method, and each must not become a series of its own.
fn method_label(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "other",
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a verification went through, for `sms_notify_verifications_total{event}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationEvent {
    Started,
    /// Another code for a pending verification.
    Resent,
    Approved,
    /// A check that did not approve (wrong code, or the verification had ended).
    Failed,
}

impl VerificationEvent {
    fn as_str(self) -> &'static str {
        match self {
            VerificationEvent::Started => "started",
            VerificationEvent::Resent => "resent",
            VerificationEvent::Approved => "approved",
            VerificationEvent::Failed => "failed",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    provider_requests: Family<ProviderLabels, Counter>,
    provider_duration: HistogramFamily<ProviderNameLabels>,
    provider_errors: Family<ProviderErrorLabels, Counter>,
    provider_ambiguous: Family<ProviderNameLabels, Counter>,
    messages: Family<MessageLabels, Gauge>,
    queue_depth: Gauge,
    queue_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    verifications: Family<EventLabels, Counter>,
    rate_limit_refusals: Family<LimitLabels, Counter>,
    pumping_alarms: Family<PrefixLabels, Counter>,
    fraud_decisions: Family<FraudDecisionLabels, Counter>,
    budget_warnings: Family<BudgetLabels, Counter>,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    webhook_duration: HistogramFamily<WebhookLabels>,
    webhook_endpoints_disabled: Family<WebhookDisabledLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    workflow_stops: Family<StopLabels, Counter>,
    data_removed: Family<RemovedLabels, Counter>,
    rollup_watermark: Gauge,
    dispatch_outcomes_deferred: Counter,
    dispatch_outcomes_dropped: Counter,
    /// Held across the read, so that concurrent scrapes wait for one read and share it.
    last_gauge_read: tokio::sync::Mutex<Option<GaugeRead>>,
}

/// From 5 ms to about 20 s: an API answer, or a provider call up to its timeout.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sms_notify");
        let metrics = Self {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            provider_requests: Family::default(),
            provider_duration: Family::new_with_constructor(latency_histogram),
            provider_errors: Family::default(),
            provider_ambiguous: Family::default(),
            messages: Family::default(),
            queue_depth: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            verifications: Family::default(),
            rate_limit_refusals: Family::default(),
            pumping_alarms: Family::default(),
            fraud_decisions: Family::default(),
            budget_warnings: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_duration: Family::new_with_constructor(latency_histogram),
            webhook_endpoints_disabled: Family::default(),
            fallbacks: Family::default(),
            workflow_stops: Family::default(),
            data_removed: Family::default(),
            rollup_watermark: Gauge::default(),
            dispatch_outcomes_deferred: Counter::default(),
            dispatch_outcomes_dropped: Counter::default(),
            last_gauge_read: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "rollup_watermark_seconds",
            "Unix time before which every hour is in the reports' rollups (0: none yet)",
            metrics.rollup_watermark.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, status and API key name",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            metrics.http_duration.clone(),
        );
        registry.register(
            "provider_requests",
            "Calls to the SMS provider, by outcome",
            metrics.provider_requests.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Time a call to the SMS provider took",
            metrics.provider_duration.clone(),
        );
        registry.register(
            "provider_errors",
            "Failed calls to the SMS provider, by the provider's error code",
            metrics.provider_errors.clone(),
        );
        registry.register(
            "provider_ambiguous_requests",
            "Calls to the SMS provider that got no answer after the request was written: the \
             provider may have accepted the message",
            metrics.provider_ambiguous.clone(),
        );
        registry.register(
            "messages",
            "Stored messages by status and channel (all instances, read from the database)",
            metrics.messages.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages queued or being sent (all instances, read from the database)",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queued message, 0 when none is queued",
            metrics.queue_oldest_age.clone(),
        );
        registry.register(
            "verifications",
            "Verification events: started, resent, approved, failed",
            metrics.verifications.clone(),
        );
        registry.register(
            "rate_limit_refusals",
            "Requests refused by a rate limit, by limit",
            metrics.rate_limit_refusals.clone(),
        );
        registry.register(
            "pumping_alarms",
            "Alarms raised for a suspicious jump of sends to one country prefix",
            metrics.pumping_alarms.clone(),
        );
        registry.register(
            "fraud_decisions",
            "The fraud guard's decisions on requests for codes, by action and reason (one per \
             reason; `none` for an allow with nothing found)",
            metrics.fraud_decisions.clone(),
        );
        registry.register(
            "budget_warnings",
            "Daily budgets whose spend crossed 80% of the cap, by scope (total, api_key, country)",
            metrics.budget_warnings.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Attempts to deliver events to client webhook endpoints, by outcome (delivered, \
             retried, failed, refused: an address the SSRF guard refused) and event type",
            metrics.webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_delivery_duration_seconds",
            "How long client webhook endpoints took to answer, by outcome and event type",
            metrics.webhook_duration.clone(),
        );
        registry.register(
            "webhook_endpoints_disabled",
            "Client webhook endpoints the service disabled, by reason (gone: answered 410; \
             failing: every delivery failed for 5 days)",
            metrics.webhook_endpoints_disabled.clone(),
        );
        registry.register(
            "verification_fallbacks",
            "Workflow steps sent on the next channel, by the channel before, the channel now \
             and why (failed, undelivered, timeout)",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "verification_workflow_stops",
            "Workflows whose next step was not sent, by why (ended, refused, unavailable)",
            metrics.workflow_stops.clone(),
        );
        registry.register(
            "data_removed_rows",
            "Stored rows removed by retention or an erasure, by kind and reason (bodies emptied \
             count as kind message_bodies)",
            metrics.data_removed.clone(),
        );
        registry.register(
            "dispatch_outcomes_deferred",
            "Outcomes of sends kept in memory because the database was unavailable, to be \
             written when it returns",
            metrics.dispatch_outcomes_deferred.clone(),
        );
        registry.register(
            "dispatch_outcomes_dropped",
            "Outcomes of sends dropped because too many were waiting for the database: their \
             messages are sent again when their leases run out",
            metrics.dispatch_outcomes_dropped.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub fn dispatch_outcome_deferred(&self) {
        self.dispatch_outcomes_deferred.inc();
    }

    pub fn dispatch_outcome_dropped(&self) {
        self.dispatch_outcomes_dropped.inc();
    }

    /// The exposition as it stands, without reading the database-backed gauges again.
    pub fn encode_counters(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn http_request(
        &self,
        method: &str,
        route: &str,
        status: u16,
        api_key: Option<&str>,
        seconds: f64,
    ) {
        let method = method_label(method);
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
                api_key: api_key.unwrap_or_default().to_owned(),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Labelled by the provider that answered, which behind failover is not always the first.
    fn provider_call(&self, result: &Result<ProviderReceipt, ProviderError>, seconds: f64) {
        let (provider, outcome) = match result {
            Ok(receipt) => (receipt.provider, "sent"),
            Err(error) => (
                error.provider,
                match error.kind {
                    // Retried as any temporary failure; counted apart too.
                    ProviderErrorKind::Retryable | ProviderErrorKind::Ambiguous => {
                        "retryable_error"
                    }
                    ProviderErrorKind::Account => "account_error",
                    ProviderErrorKind::Permanent => "permanent_error",
                },
            ),
        };
        self.provider_requests
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.provider_duration
            .get_or_create(&ProviderNameLabels {
                provider: provider.to_owned(),
            })
            .observe(seconds);
        if let Err(error) = result {
            if error.is_ambiguous() {
                self.provider_ambiguous
                    .get_or_create(&ProviderNameLabels {
                        provider: provider.to_owned(),
                    })
                    .inc();
            }
            let code = error
                .code
                .clone()
                .or_else(|| error.http_status.map(|status| status.to_string()))
                .unwrap_or_else(|| "none".to_owned());
            self.provider_errors
                .get_or_create(&ProviderErrorLabels {
                    provider: provider.to_owned(),
                    code,
                })
                .inc();
        }
    }

    pub fn verification(&self, event: VerificationEvent) {
        self.verifications
            .get_or_create(&EventLabels {
                event: event.as_str().to_owned(),
            })
            .inc();
    }

    /// A request refused by a rate limit; `limit` names the limit (`resend_interval`,
    /// `max_sends`, `per_number`, `per_api_key`, ...).
    pub fn rate_limit_refused(&self, limit: &str) {
        self.rate_limit_refusals
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// An SMS pumping alarm for sends to `prefix` (a country calling code such as `+44`).
    pub fn pumping_alarm(&self, prefix: &str) {
        self.pumping_alarms
            .get_or_create(&PrefixLabels {
                prefix: prefix.to_owned(),
            })
            .inc();
    }

    /// A decision of the fraud guard, for one of its reasons (`None`: nothing found).
    pub fn fraud_decision(&self, action: Action, reason: Option<ReasonCode>) {
        self.fraud_decisions
            .get_or_create(&FraudDecisionLabels {
                action: action.as_str().to_owned(),
                reason: reason.map_or("none", ReasonCode::as_str).to_owned(),
            })
            .inc();
    }

    /// A workflow moved from channel `from` to `to` for `reason`.
    pub fn fallback(&self, from: Channel, to: Channel, reason: FallbackReason) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// A workflow's next step was not sent: `ended` (the verification had), `refused` (a
    /// limit, the fraud guard, a channel not offered) or `unavailable` (a render failed).
    pub fn workflow_stopped(&self, reason: &'static str) {
        self.workflow_stops
            .get_or_create(&StopLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A daily budget of `scope` (`total`, `api_key`, `country`) crossed 80% of its cap.
    /// A delivery attempt to a client's webhook endpoint; `seconds` is `None` when no request
    /// was made.
    pub fn webhook_delivery(
        &self,
        outcome: &'static str,
        event: &'static str,
        seconds: Option<f64>,
    ) {
        let labels = WebhookLabels {
            outcome: outcome.to_owned(),
            event: event.to_owned(),
        };
        self.webhook_deliveries.get_or_create(&labels).inc();
        if let Some(seconds) = seconds {
            self.webhook_duration
                .get_or_create(&labels)
                .observe(seconds);
        }
    }

    pub fn webhook_endpoint_disabled(&self, reason: &'static str) {
        self.webhook_endpoints_disabled
            .get_or_create(&WebhookDisabledLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn budget_warning(&self, scope: &str) {
        self.budget_warnings
            .get_or_create(&BudgetLabels {
                scope: scope.to_owned(),
            })
            .inc();
    }

    /// Where the reports' rollups have folded up to.
    pub fn rollup_watermark(&self, watermark: Option<chrono::DateTime<chrono::Utc>>) {
        self.rollup_watermark
            .set(watermark.map_or(0, |watermark| watermark.timestamp()));
    }

    /// `count` rows of `kind` removed (or bodies emptied) for `reason` (`retention`,
    /// `erasure`).
    pub fn data_removed(&self, kind: &str, reason: &str, count: u64) {
        if count > 0 {
            self.data_removed
                .get_or_create(&RemovedLabels {
                    kind: kind.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// The exposition, with the database-backed gauges read again when the last read is older
    /// than [`GAUGE_READ_INTERVAL`]. The oldest message's age is counted to `now` either way.
    pub async fn render(
        &self,
        reports: &dyn MessageReports,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        {
            let mut last = self.last_gauge_read.lock().await;
            let oldest_queued_at = match last.as_ref() {
                Some(read) if read.at.elapsed() < GAUGE_READ_INTERVAL => read.oldest_queued_at,
                _ => {
                    let oldest_queued_at = self.read_gauges(reports).await?;
                    *last = Some(GaugeRead {
                        at: tokio::time::Instant::now(),
                        oldest_queued_at,
                    });
                    oldest_queued_at
                }
            };
            let oldest_age = oldest_queued_at.map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.queue_oldest_age.set(oldest_age);
        }
        Ok(self.encode_counters())
    }

    /// Sets the message and queue gauges from the database; answers when the oldest queued
    /// message was queued.
    async fn read_gauges(
        &self,
        reports: &dyn MessageReports,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let counts = reports.status_counts().await?;
        let queue = reports.queue_stats().await?;
        // A pair that no longer occurs must not keep its last value.
        self.messages.clear();
        for count in counts {
            self.messages
                .get_or_create(&MessageLabels {
                    status: count.status.as_str().to_owned(),
                    channel: count.channel.as_str().to_owned(),
                })
                .set(i64::try_from(count.count).unwrap_or(i64::MAX));
        }
        self.queue_depth
            .set(i64::try_from(queue.depth).unwrap_or(i64::MAX));
        Ok(queue.oldest_queued_at)
    }
}

/// An [`SmsProvider`] that times and counts every call of the one it wraps, so that the
/// dispatcher needs to know nothing of metrics.
pub struct MeteredProvider {
    inner: Arc<dyn SmsProvider>,
    metrics: Arc<Metrics>,
}

impl MeteredProvider {
    pub fn new(inner: Arc<dyn SmsProvider>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl SmsProvider for MeteredProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn can_send(&self, channel: domain::Channel) -> bool {
        self.inner.can_send(channel)
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        let started = Instant::now();
        let result = self.inner.send(message).await;
        self.metrics
            .provider_call(&result, started.elapsed().as_secs_f64());
        result
    }

    async fn check_ready(&self) -> Result<(), ProviderError> {
        self.inner.check_ready().await
    }
}

#[cfg(test)]
mod tests {
    use domain::{Channel, MessageId, MessageStatus, PhoneNumber};
    use ports::{MockMessageReports, MockSmsProvider, ProviderErrorKind, QueueStats, StatusCount};

    use super::*;

    async fn scrape(metrics: &Metrics, now: DateTime<Utc>) -> String {
        let mut reports = MockMessageReports::new();
        reports.expect_status_counts().returning(|| {
            Ok(vec![StatusCount {
                status: MessageStatus::Queued,
                channel: Channel::Sms,
                count: 2,
            }])
        });
        reports.expect_queue_stats().returning(move || {
            Ok(QueueStats {
                depth: 2,
                oldest_queued_at: Some(now - chrono::TimeDelta::seconds(90)),
            })
        });
        metrics.render(&reports, now).await.unwrap()
    }

    #[tokio::test]
    async fn gauges_come_from_the_store_and_counters_from_events() {
        let metrics = Metrics::new();
        metrics.http_request("POST", "/v1/messages", 202, Some("shop"), 0.01);
        metrics.verification(VerificationEvent::Approved);
        metrics.rate_limit_refused("per_number");
        metrics.pumping_alarm("+44");
        metrics.fraud_decision(Action::Block, Some(ReasonCode::PrefixSurge));
        metrics.fraud_decision(Action::Allow, None);
        let text = scrape(&metrics, Utc::now()).await;
        for line in [
            r#"sms_notify_http_requests_total{method="POST",route="/v1/messages",status="202",api_key="shop"} 1"#,
            r#"sms_notify_messages{status="queued",channel="sms"} 2"#,
            "sms_notify_queue_depth 2",
            "sms_notify_queue_oldest_age_seconds 90.0",
            r#"sms_notify_verifications_total{event="approved"} 1"#,
            r#"sms_notify_rate_limit_refusals_total{limit="per_number"} 1"#,
            r#"sms_notify_pumping_alarms_total{prefix="+44"} 1"#,
            r#"sms_notify_fraud_decisions_total{action="block",reason="prefix_surge"} 1"#,
            r#"sms_notify_fraud_decisions_total{action="allow",reason="none"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    /// A database whose every read of the counts takes 100 ms and reports, as the queue's
    /// depth, how many reads there have been.
    #[derive(Default)]
    struct CountingReports {
        reads: std::sync::atomic::AtomicU64,
    }

    #[async_trait]
    impl MessageReports for CountingReports {
        async fn list_messages(
            &self,
            _: &ports::MessageFilter,
        ) -> Result<Vec<domain::Message>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn attempts_of(
            &self,
            _: &[MessageId],
        ) -> Result<Vec<(MessageId, domain::Attempt)>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn usage(&self, _: &ports::UsageQuery) -> Result<Vec<ports::UsageGroup>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn error_codes(
            &self,
            _: &ports::UsageQuery,
        ) -> Result<Vec<ports::ErrorCodeCount>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn costs(&self, _: &ports::UsageQuery) -> Result<Vec<ports::CostSum>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn conversion(
            &self,
            _: &ports::ConversionQuery,
        ) -> Result<Vec<ports::ConversionGroup>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn hourly(
            &self,
            _: chrono::DateTime<Utc>,
            _: chrono::DateTime<Utc>,
        ) -> Result<Vec<(chrono::DateTime<Utc>, ports::HourFigures)>, StoreError> {
            unreachable!("metrics read only the counts")
        }
        async fn status_counts(&self) -> Result<Vec<StatusCount>, StoreError> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(vec![])
        }
        async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
            Ok(QueueStats {
                depth: self.reads.load(std::sync::atomic::Ordering::SeqCst),
                oldest_queued_at: None,
            })
        }
    }

    fn reads(reports: &CountingReports) -> u64 {
        reports.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_within_the_interval_reuse_one_read_of_the_database() {
        let metrics = Metrics::new();
        let reports = CountingReports::default();
        for _ in 0..50 {
            let text = metrics.render(&reports, Utc::now()).await.unwrap();
            assert!(
                text.lines().any(|l| l == "sms_notify_queue_depth 1"),
                "{text}"
            );
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(reads(&reports), 1);
        tokio::time::advance(GAUGE_READ_INTERVAL).await;
        let text = metrics.render(&reports, Utc::now()).await.unwrap();
        assert!(
            text.lines().any(|l| l == "sms_notify_queue_depth 2"),
            "{text}"
        );
        assert_eq!(reads(&reports), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_scrapes_share_one_read_of_the_database() {
        let metrics = Arc::new(Metrics::new());
        let reports = Arc::new(CountingReports::default());
        let mut scrapes = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (metrics, reports) = (metrics.clone(), reports.clone());
            scrapes.spawn(async move { metrics.render(reports.as_ref(), Utc::now()).await });
        }
        while let Some(text) = scrapes.join_next().await {
            assert!(text.unwrap().unwrap().contains("sms_notify_queue_depth 1"));
        }
        assert_eq!(reads(&reports), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_messages_age_grows_between_reads() {
        let metrics = Metrics::new();
        let now = Utc::now();
        let first = scrape(&metrics, now).await;
        assert!(
            first.contains("sms_notify_queue_oldest_age_seconds 90.0"),
            "{first}"
        );
        let later = scrape(&metrics, now + chrono::TimeDelta::seconds(2)).await;
        assert!(
            later.contains("sms_notify_queue_oldest_age_seconds 92.0"),
            "{later}"
        );
    }

    #[tokio::test]
    async fn provider_calls_are_counted_by_outcome_and_error_code() {
        let mut provider = MockSmsProvider::new();
        provider.expect_name().return_const("twilio");
        provider.expect_send().times(1).returning(|_| {
            Err(ProviderError {
                provider: "twilio",
                kind: ProviderErrorKind::Permanent,
                http_status: Some(400),
                code: Some("21211".into()),
                message: "invalid number".into(),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            })
        });
        let metrics = Arc::new(Metrics::new());
        let metered = MeteredProvider::new(Arc::new(provider), metrics.clone());
        let outbound = OutboundMessage {
            message_id: MessageId::generate(),
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            body: "hi".into(),
            locale: None,
            content_sid: None,
            validity: None,
            sensitive: false,
        };
        assert!(metered.send(&outbound).await.is_err());
        let text = scrape(&metrics, Utc::now()).await;
        assert!(
            !text.contains("sms_notify_provider_ambiguous_requests_total{"),
            "a refusal is no ambiguous call"
        );
        for line in [
            r#"sms_notify_provider_requests_total{provider="twilio",outcome="permanent_error"} 1"#,
            r#"sms_notify_provider_errors_total{provider="twilio",code="21211"} 1"#,
            r#"sms_notify_provider_request_duration_seconds_count{provider="twilio"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_call_unanswered_after_the_request_was_written_is_counted_as_ambiguous() {
        let mut provider = MockSmsProvider::new();
        provider.expect_name().return_const("twilio");
        provider.expect_send().times(1).returning(|_| {
            Err(ProviderError {
                provider: "twilio",
                kind: ProviderErrorKind::Ambiguous,
                http_status: None,
                code: None,
                message: "twilio did not answer within 10000 ms".into(),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            })
        });
        let metrics = Arc::new(Metrics::new());
        let metered = MeteredProvider::new(Arc::new(provider), metrics.clone());
        let outbound = OutboundMessage {
            message_id: MessageId::generate(),
            to: PhoneNumber::parse("+15551234567").unwrap(),
            channel: Channel::Sms,
            body: "hi".into(),
            locale: None,
            content_sid: None,
            validity: None,
            sensitive: false,
        };
        assert!(metered.send(&outbound).await.is_err());
        let text = scrape(&metrics, Utc::now()).await;
        for line in [
            r#"sms_notify_provider_ambiguous_requests_total{provider="twilio"} 1"#,
            r#"sms_notify_provider_requests_total{provider="twilio",outcome="retryable_error"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
