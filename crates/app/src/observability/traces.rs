//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when an endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`): an operator's
//! tracing backend then sees a request, the sends it queued (on whatever instance claims them)
//! and their provider calls as one trace, and the status callbacks and client webhook
//! deliveries that came of a send as traces of their own linked to it.
//!
//! A trace crosses the durable queue as a W3C `traceparent` stored with the message, and each
//! attempt keeps its send span's. Without an endpoint nothing is installed, and every helper
//! here returns at once: the message path allocates nothing for tracing it does not do.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use domain::Message;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use ports::MessageStore;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::wiring::config::TracesConfig;

/// The name the service's spans are exported under when the operator names none
/// (`OTEL_SERVICE_NAME`, or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`).
pub const DEFAULT_SERVICE_NAME: &str = "sms-notify";

/// Whether spans are exported: set once, when the exporter is installed.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported by this process.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter, while it runs; [`Traces::shutdown`] sends what is still buffered.
#[derive(Debug, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Builds the OTLP exporter `config` asks for, and the tracer the logging layer feeds.
    /// `None` for the tracer when traces are off.
    pub fn start(config: &TracesConfig) -> Result<(Self, Option<SdkTracer>), String> {
        let TracesConfig::Otlp {
            endpoint,
            default_service_name,
        } = config
        else {
            return Ok((Self::default(), None));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .build()
            .map_err(|error| format!("cannot build the OTLP exporter: {error}"))?;
        // The resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself.
        let mut resource = Resource::builder();
        if *default_service_name {
            resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("sms-notify");
        EXPORTING.store(true, Ordering::Relaxed);
        Ok((
            Self {
                provider: Some(provider),
            },
            Some(tracer),
        ))
    }

    /// Exports the spans still buffered and stops the exporter; at most its timeout.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        EXPORTING.store(false, Ordering::Relaxed);
        // The exporter's HTTP client blocks: off the runtime's threads.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            eprintln!("traces: the last spans may not have been exported: {error}");
        }
    }
}

/// Continues `span` (a request's) from the caller's `traceparent` header, when there is one.
pub fn continue_request(span: &Span, headers: &HeaderMap) {
    if !exporting() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` of the span being run, to store with what it queues; `None` when traces
/// are off.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    traceparent_of(&Span::current())
}

/// `span`'s W3C `traceparent`, when traces are on and it is exported.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the span a stored `traceparent` names (another instance's, maybe).
pub fn continue_from(span: &Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(parent) = traceparent.and_then(parse) {
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
}

/// Links `span` to the span a stored `traceparent` names: what it follows from, in a trace of
/// its own.
pub fn link_to(span: &Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(linked) = traceparent.and_then(parse) {
        span.add_link(linked);
    }
}

/// Links the span being run to the last send of `message` (its last traced attempt's send
/// span; the request that queued it when no attempt was traced). Reads the attempts only
/// when traces are exported.
pub async fn link_to_send(store: &dyn MessageStore, message: &Message) {
    if !exporting() {
        return;
    }
    let last_send = store.attempts(message.id).await.ok().and_then(|attempts| {
        attempts
            .into_iter()
            .rev()
            .find_map(|attempt| attempt.traceparent)
    });
    link_to(
        &Span::current(),
        last_send.as_deref().or(message.traceparent.as_deref()),
    );
}

fn parse(traceparent: &str) -> Option<SpanContext> {
    let context = TraceContextPropagator::new().extract(&Stored(traceparent));
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// A request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// A stored `traceparent`, as the propagator reads it.
struct Stored<'a>(&'a str);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}
