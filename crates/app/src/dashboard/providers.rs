//! Providers for operators: each provider's circuit in this instance (closed, open or
//! half-open, since when, its recent provider-wide failures, when an open one lets a probe
//! through), in failover order. Circuits are each instance's own: another instance may have
//! learnt otherwise.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Utc};

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::providers::failover::{CircuitState, ProviderCircuit};
use crate::Services;

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
) -> Result<Html<String>, PageError> {
    let now = services.now();
    let circuits = services.provider_circuits();
    let mut body = String::from(
        "<p>Attempts go to the first provider, in this order, whose circuit lets them through. \
         A circuit opens after repeated provider-wide failures (timeouts, 5xx, throttling) or \
         at once on an account failure, and lets one attempt probe the provider after its \
         cool-down. These are this instance's circuits.</p>",
    );
    body.push_str(&circuits_table(&circuits, now));
    Ok(Html(html::page(
        "Providers",
        Some(Nav::Providers),
        Some(&operator.header()),
        &[],
        &body,
    )))
}

/// The circuits as a table, the overview's and this page's: provider, state (marked
/// `data-circuit` for tests and scripts), since when, recent failures, next probe.
pub(super) fn circuits_table(circuits: &[ProviderCircuit], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = circuits
        .iter()
        .map(|circuit| {
            let class = match circuit.state {
                CircuitState::Closed => "good",
                CircuitState::Open => "bad",
                CircuitState::HalfOpen => "warn",
            };
            vec![
                esc(circuit.provider),
                format!(
                    r#"<span class="{class}" data-circuit="{provider}">{state}</span>"#,
                    provider = esc(circuit.provider),
                    state = circuit.state.as_str()
                ),
                html::time(circuit.since, now),
                count(u64::from(circuit.recent_failures)),
                circuit
                    .probe_at
                    .map_or_else(|| "—".to_owned(), |at| html::time(at, now)),
            ]
        })
        .collect();
    html::table(
        "Circuits, in failover order",
        &[
            "Provider",
            "Circuit",
            "Since",
            "Recent failures",
            "Next probe",
        ],
        &rows,
        "One provider is configured (SMS_PROVIDERS): there is no failover, so no circuit.",
    )
}
