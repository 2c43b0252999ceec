//! The worker of fallback workflows: on every instance, it claims the workflows whose next
//! step is due (their delay passed, or their step's message failed or was not delivered) and
//! has the use case take each step. The store's claim (skip locked, a lease) keeps two
//! instances from taking one step, and a step is recorded only from the step its worker
//! claimed, so a restart or a second instance continues a workflow and never repeats a step.
//!
//! A receipt does not signal the worker: it finds the step's failure at its next look, at
//! most [`WorkflowConfig::interval`] later, which keeps the receipt's and the dispatcher's
//! writes as they are.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backoff::Backoff;
use crate::Services;

/// Most steps claimed per look, so that a backlog is taken in bites.
const BATCH: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowConfig {
    /// How often each instance looks for due steps.
    pub interval: Duration,
    /// How long a claimed step is held: a worker that dies loses its claims after this.
    pub lease: Duration,
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
        }
    }
}

/// Takes due steps every `interval` until `shutdown` turns true; a full batch is followed by
/// the next at once. After the store fails, the looks back off (see `backoff`).
pub async fn run(
    services: Arc<Services>,
    config: WorkflowConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::after(config.interval);
    while !*shutdown.borrow() {
        let claimed = services.run_due_steps(BATCH, config.lease).await;
        if claimed.is_ok() {
            let failures = backoff.succeeded();
            if failures > 0 {
                tracing::info!(
                    failures,
                    "the database answers again; taking workflow steps"
                );
            }
        }
        let pause = match claimed {
            Ok(claimed) if claimed >= BATCH as usize => Duration::ZERO,
            Ok(_) => config.interval,
            Err(error) => {
                let wait = backoff.failed();
                tracing::error!(
                    %error,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "cannot claim workflow steps"
                );
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}
