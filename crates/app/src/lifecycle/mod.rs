//! What happens to stored data as it ages: the retention job, which removes what is older than
//! `RETENTION_DAYS` and empties bodies older than `MESSAGE_BODY_RETENTION_HOURS`, and the
//! rollup job, which folds clean hours into the reports' rollups, each on one instance at a
//! time. (Erasing one number on request is a use case: `usecases::erasure`.)

pub mod retention;
pub mod rollups;

use std::future::Future;
use std::time::Duration;

use ports::StoreError;
use tokio::sync::watch;

use crate::dispatch::backoff::Backoff;

/// Runs `once` every `interval`, the first time at once, until `shutdown` turns true. A run the
/// database's unavailability cut short is tried again on the background loops' backoff (the
/// job's lease is still this instance's, or free), so that it resumes within seconds of the
/// database's return; any other failure waits for the next interval.
async fn every<F, Fut, T>(
    job: &'static str,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut once: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::new();
    while !*shutdown.borrow() {
        let pause = match once().await {
            Ok(_) => {
                backoff.succeeded();
                interval
            }
            Err(error @ StoreError::Unavailable(_)) => {
                let wait = backoff.failed().min(interval);
                tracing::error!(
                    %error,
                    job,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "background job failed: the database is unavailable"
                );
                wait
            }
            Err(error) => {
                backoff.succeeded();
                tracing::error!(%error, job, "background job failed; trying again at the next interval");
                interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}
