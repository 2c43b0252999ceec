//! Client webhook endpoints for operators: every key's endpoints, whether each is enabled,
//! why the service disabled one, and since when its deliveries have been failing; then, for
//! each endpoint with failing deliveries, those deliveries: the event, its attempts, the
//! endpoint's last answer and when it is tried again, or that it was given up.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use domain::webhook::EventType;
use ports::FailingDelivery;

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::Services;

/// Failing deliveries shown per endpoint: the newest, enough to see what is wrong.
const DELIVERIES_SHOWN: u32 = 20;

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
) -> Result<Html<String>, PageError> {
    let now = services.now();
    let endpoints = services.all_webhook_endpoints().await?;
    let failing = endpoints
        .iter()
        .filter(|endpoint| endpoint.failing_since.is_some() || !endpoint.enabled)
        .count();
    let mut body = format!(
        r#"<p>{} endpoints, {} of them failing or disabled.</p>"#,
        html::count(endpoints.len() as u64),
        html::count(failing as u64)
    );
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|endpoint| {
            let health = match (&endpoint.failing_since, endpoint.enabled) {
                (_, false) => format!(
                    r#"<span class="bad">disabled ({})</span>"#,
                    esc(endpoint
                        .disabled_reason
                        .as_deref()
                        .unwrap_or("by its client"))
                ),
                (Some(since), true) => {
                    format!(
                        r#"<span class="bad">failing since {}</span>"#,
                        html::time(*since, now)
                    )
                }
                (None, true) => r#"<span class="good">delivering</span>"#.to_owned(),
            };
            let events: Vec<&str> = endpoint.events.iter().map(|kind| kind.as_str()).collect();
            vec![
                format!(r#"<span class="mono">{}</span>"#, esc(&endpoint.url)),
                esc(&endpoint.api_key),
                health,
                esc(&events.join(", ")),
                html::time(endpoint.created_at, now),
            ]
        })
        .collect();
    body.push_str(&html::table(
        "Endpoints, oldest first",
        &["URL", "API key", "Health", "Events", "Registered"],
        &rows,
        "No webhook endpoint is registered.",
    ));

    body.push_str("<h2>Failing deliveries</h2>");
    let mut any = false;
    for endpoint in &endpoints {
        let deliveries = services
            .failing_deliveries(endpoint.id, DELIVERIES_SHOWN)
            .await?;
        if deliveries.is_empty() {
            continue;
        }
        any = true;
        let rows: Vec<Vec<String>> = deliveries
            .iter()
            .map(|delivery| delivery_row(delivery, now))
            .collect();
        let _ = write!(
            body,
            r#"<section class="endpoint-deliveries" data-endpoint="{id}">"#,
            id = endpoint.id
        );
        body.push_str(&html::table(
            &format!("To {} (newest first)", endpoint.url),
            &[
                "Event",
                "About",
                "Attempts",
                "Last answer",
                "Next try",
                "Created",
            ],
            &rows,
            "",
        ));
        body.push_str("</section>");
    }
    if !any {
        body.push_str(r#"<p class="empty">No delivery is failing.</p>"#);
    }
    Ok(Html(html::page(
        "Webhook endpoints",
        Some(Nav::Webhooks),
        Some(&operator.header()),
        &[],
        &body,
    )))
}

fn delivery_row(delivery: &FailingDelivery, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let kind = delivery.kind.as_str();
    // Events are about a message or a verification, whose timelines show the rest; a block's
    // is the fraud guard's logged decision.
    let about = if kind.starts_with("message.") {
        format!(
            r#"<a class="mono" href="/dashboard/messages/{0}">{0}</a>"#,
            delivery.object_id
        )
    } else if delivery.kind != EventType::VerificationBlocked {
        format!(
            r#"<a class="mono" href="/dashboard/verifications/{0}">{0}</a>"#,
            delivery.object_id
        )
    } else {
        format!(r#"<span class="mono">{}</span>"#, delivery.object_id)
    };
    let answer = match (delivery.last_http_status, delivery.last_error.as_deref()) {
        (Some(status), Some(error)) => format!("HTTP {status}: {}", esc(error)),
        (Some(status), None) => format!("HTTP {status}"),
        (None, Some(error)) => format!("no answer: {}", esc(error)),
        (None, None) => "no answer".to_owned(),
    };
    let next = delivery.next_attempt_at.map_or_else(
        || r#"<span class="bad">given up</span>"#.to_owned(),
        |at| html::time(at, now),
    );
    vec![
        format!("<code>{}</code>", esc(kind)),
        about,
        count(u64::from(delivery.attempts)),
        answer,
        next,
        html::time(delivery.created_at, now),
    ]
}
