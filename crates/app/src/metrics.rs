//! The service's Prometheus metrics, one registry per [`Metrics`] (no global state, so that
//! several services in one test process count apart).
//!
//! Counters count what this instance did. The message and queue gauges are read from the
//! shared database at each scrape, so every instance reports the same values: aggregate them
//! with `max`, not `sum`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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

/// What `/metrics` answers with: the OpenMetrics text format, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
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
struct PrefixLabels {
    prefix: String,
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
    messages: Family<MessageLabels, Gauge>,
    queue_depth: Gauge,
    queue_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    verifications: Family<EventLabels, Counter>,
    rate_limit_refusals: Family<LimitLabels, Counter>,
    pumping_alarms: Family<PrefixLabels, Counter>,
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
            messages: Family::default(),
            queue_depth: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            verifications: Family::default(),
            rate_limit_refusals: Family::default(),
            pumping_alarms: Family::default(),
            registry: Registry::default(),
        };
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
        Self {
            registry,
            ..metrics
        }
    }

    pub fn http_request(
        &self,
        method: &str,
        route: &str,
        status: u16,
        api_key: Option<&str>,
        seconds: f64,
    ) {
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
                    ProviderErrorKind::Retryable => "retryable_error",
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

    /// The exposition: first the gauges are read again from the database.
    pub async fn render(
        &self,
        reports: &dyn MessageReports,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
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
        let oldest_age = queue.oldest_queued_at.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.queue_oldest_age.set(oldest_age);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        Ok(text)
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

/// Pumping alarms count per calling code.
impl crate::guards::PumpingAlarmHook for Metrics {
    fn surge(&self, calling_code: u16, _traffic: &domain::Traffic) {
        self.pumping_alarm(&format!("+{calling_code}"));
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
        let text = scrape(&metrics, Utc::now()).await;
        for line in [
            r#"sms_notify_http_requests_total{method="POST",route="/v1/messages",status="202",api_key="shop"} 1"#,
            r#"sms_notify_messages{status="queued",channel="sms"} 2"#,
            "sms_notify_queue_depth 2",
            "sms_notify_queue_oldest_age_seconds 90.0",
            r#"sms_notify_verifications_total{event="approved"} 1"#,
            r#"sms_notify_rate_limit_refusals_total{limit="per_number"} 1"#,
            r#"sms_notify_pumping_alarms_total{prefix="+44"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
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
            validity: None,
            sensitive: false,
        };
        assert!(metered.send(&outbound).await.is_err());
        let text = scrape(&metrics, Utc::now()).await;
        for line in [
            r#"sms_notify_provider_requests_total{provider="twilio",outcome="permanent_error"} 1"#,
            r#"sms_notify_provider_errors_total{provider="twilio",code="21211"} 1"#,
            r#"sms_notify_provider_request_duration_seconds_count{provider="twilio"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
