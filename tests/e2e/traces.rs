//! OpenTelemetry traces across instances: a request's trace, continued from the caller's
//! `traceparent`, reaches the sends of the message it queued on whichever instance claims
//! them, and a status callback is a trace of its own linked to the send. A local OTLP/HTTP
//! receiver decodes what each instance exports, as a collector would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use domain::MessageId;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fake_twilio::{form_fields, messages_post, Recorder};
use crate::service::{shared_env, Service};
use crate::support::{API_KEY, FROM};
use crate::webhooks::{callback, twilio_signature, CALLBACK_URL, PUBLIC_BASE_URL, WEBHOOK_PATH};

const TO: &str = "+15551234567";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// One span as the receiver decoded it, with the service that exported it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

/// An OTLP/HTTP receiver on a random local port: every span exported to `/v1/traces`.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.0.lock().unwrap().clone()
    }

    /// The spans named `name` that `service` exported.
    fn named(&self, service: &str, name: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|span| span.service == service && span.name == name)
            .collect()
    }
}

async fn export(State(receiver): State<Receiver>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = receiver.0.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(
                |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(name) => Some(name.clone()),
                    _ => None,
                },
            )
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                links: span
                    .links
                    .iter()
                    .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                    .collect(),
            });
        }
    }
    StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Waits until `server` has had `count` requests.
async fn requests_reach(server: &MockServer, count: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    while server.received_requests().await.unwrap_or_default().len() < count {
        assert!(
            Instant::now() < deadline,
            "{} got fewer than {count} requests",
            server.uri()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one span in `spans`, failing with all of them shown otherwise.
fn only(spans: Vec<ReceivedSpan>, what: &str) -> ReceivedSpan {
    assert_eq!(spans.len(), 1, "one {what} expected: {spans:#?}");
    spans.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_trace_reaches_its_sends_on_two_instances_and_what_follows_links_to_the_send() {
    let database = TestDatabase::create().await;
    let twilio = MockServer::start().await;
    // The first attempt fails (Twilio's 500, retried after RETRY_BASE_MS) on the instance that
    // accepted the request, which then stops; the retry is the other instance's.
    messages_post(form_fields(
        &[("To", TO), ("From", FROM)],
        &["Body", "StatusCallback"],
    ))
    .respond_with(ResponseTemplate::new(500))
    .up_to_n_times(1)
    .with_priority(1)
    .mount(&twilio)
    .await;
    let recorder = Recorder::new(Duration::ZERO);
    messages_post(form_fields(
        &[("To", TO), ("From", FROM)],
        &["Body", "StatusCallback"],
    ))
    .respond_with(recorder.clone())
    .mount(&twilio)
    .await;
    let client_endpoint = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&client_endpoint)
        .await;
    let (receiver, collector) = Receiver::start().await;
    let env = |service: &str| {
        shared_env(
            &database,
            &twilio,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
                ("OTEL_SERVICE_NAME", service),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer otlp-secret",
                ),
                ("RETRY_BASE_MS", "3000"),
                ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
                ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ],
        )
    };
    let client = reqwest::Client::new();

    let accepting = Service::start(&env("accepting")).await;
    let registered = client
        .post(format!("{}/v1/webhook-endpoints", accepting.base))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({
            "url": format!("{}/hooks", client_endpoint.uri()),
            "events": ["message.delivered"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let response = client
        .post(format!("{}/v1/messages", accepting.base))
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .json(&serde_json::json!({"to": TO, "body": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let message: serde_json::Value = response.json().await.unwrap();
    let id: MessageId = message["id"].as_str().unwrap().parse().unwrap();
    requests_reach(&twilio, 1, Duration::from_secs(10)).await;
    // Its last spans are exported as it stops.
    let stopped = accepting.terminate(Duration::from_secs(15)).await;
    assert_eq!(stopped.code(), Some(0));

    let sending = Service::start(&env("sending")).await;
    recorder.wait_for(1, Duration::from_secs(20)).await;
    let store = database.store().await;
    let sid = loop {
        let stored = ports::MessageStore::get(&store, id).await.unwrap().unwrap();
        if let Some(sid) = stored.provider_sid {
            break sid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let report = callback(&sid, "delivered");
    let pairs: Vec<(&str, &str)> = report.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let answered = client
        .post(format!("{}{WEBHOOK_PATH}", sending.base))
        .header("X-Twilio-Signature", twilio_signature(CALLBACK_URL, &pairs))
        .form(&pairs)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    requests_reach(&client_endpoint, 1, Duration::from_secs(15)).await;
    assert_eq!(
        sending.terminate(Duration::from_secs(15)).await.code(),
        Some(0)
    );

    let request = only(
        receiver
            .named("accepting", "request")
            .into_iter()
            .filter(|span| span.trace_id == TRACE_ID)
            .collect(),
        "traced request",
    );
    assert_eq!(
        request.parent_span_id, CALLER_SPAN_ID,
        "continued from the caller"
    );
    let first_send = only(
        receiver.named("accepting", "send"),
        "send on the first instance",
    );
    let retry = only(
        receiver.named("sending", "send"),
        "send on the second instance",
    );
    for send in [&first_send, &retry] {
        assert_eq!(
            (send.trace_id.as_str(), send.parent_span_id.as_str()),
            (TRACE_ID, request.span_id.as_str()),
            "each send is a child of the request, whichever instance sent it"
        );
    }
    for (service, send) in [("accepting", &first_send), ("sending", &retry)] {
        let call = only(receiver.named(service, "provider call"), "provider call");
        assert_eq!(
            (call.trace_id.as_str(), call.parent_span_id.as_str()),
            (TRACE_ID, send.span_id.as_str()),
            "the provider call is a child of its send"
        );
    }
    let callback = only(
        receiver
            .named("sending", "request")
            .into_iter()
            .filter(|span| !span.links.is_empty())
            .collect(),
        "status callback",
    );
    assert_ne!(callback.trace_id, TRACE_ID, "a trace of its own");
    assert_eq!(
        callback.links,
        [(TRACE_ID.to_owned(), retry.span_id.clone())]
    );
    let delivery = only(receiver.named("sending", "deliver"), "webhook delivery");
    assert_ne!(delivery.trace_id, TRACE_ID, "a trace of its own");
    assert_eq!(
        delivery.links,
        [(TRACE_ID.to_owned(), retry.span_id.clone())]
    );
}
