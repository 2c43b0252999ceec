//! Client webhook endpoints for operators: every key's endpoints, whether each is enabled,
//! why the service disabled one, and since when its deliveries have been failing.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::html::{self, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::Services;

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
    Ok(Html(html::page(
        "Webhook endpoints",
        Some(Nav::Webhooks),
        Some(&operator.header()),
        &[],
        &body,
    )))
}
