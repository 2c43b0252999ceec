//! The rollup job: every interval, the instance that takes the job's lease folds the hours
//! that became clean into the reports' hourly rollups (`DataLifecycle::fold_rollups`), a few
//! days of hours per transaction until it has caught up, and publishes the watermark
//! (`rollup_watermark_seconds`). The reports read the rollups before the watermark and raw rows
//! after it, so they answer the same whether or not the job has run; it only makes them fast.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use ports::{Clock, DataLifecycle, FoldStep, LeaseHolder, StoreError};
use tokio::sync::watch;

use crate::observability::metrics::Metrics;

/// The lease's name: one fold at a time across every instance.
const JOB: &str = "rollups";
/// How long a lease lasts without renewal; each step renews it.
const LEASE: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupConfig {
    /// An hour is folded once it ended this long ago (and none of its messages is still queued
    /// or in flight, none of its verifications pending). It covers a verification's lifetime
    /// (10 minutes unless a service sets more) and the delivery receipts that usually follow a
    /// send within minutes; a receipt later than that is still counted, as a change to the
    /// folded hour, only at a higher price per receipt.
    pub settle: TimeDelta,
    /// How often each instance tries to run the job.
    pub interval: Duration,
    /// Hours folded per transaction: a week keeps a first fold of years of rows in short
    /// transactions, and a late receipt waits for one of them at most.
    pub hours_per_step: u32,
}

impl Default for RollupConfig {
    fn default() -> Self {
        Self {
            settle: TimeDelta::hours(2),
            interval: Duration::from_secs(60),
            hours_per_step: 24 * 7,
        }
    }
}

/// What one call of [`RollupJob::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupRun {
    /// Another instance holds the job's lease.
    Skipped,
    Done(FoldStep),
}

pub struct RollupJob {
    store: Arc<dyn DataLifecycle>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: RollupConfig,
    holder: LeaseHolder,
}

impl RollupJob {
    pub fn new(
        store: Arc<dyn DataLifecycle>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: RollupConfig,
    ) -> Self {
        Self {
            store,
            clock,
            metrics,
            config,
            holder: LeaseHolder(uuid::Uuid::new_v4().as_u128()),
        }
    }

    /// Runs the job every interval until `shutdown` turns true (`lifecycle::every`).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        super::every("rollups", self.config.interval, shutdown, || {
            self.run_once()
        })
        .await;
    }

    /// One run, if this instance takes the lease: folds step after step until caught up.
    pub async fn run_once(&self) -> Result<RollupRun, StoreError> {
        let now = self.clock.now();
        if !self
            .store
            .take_lease(JOB, self.holder, now, now + LEASE)
            .await?
        {
            return Ok(RollupRun::Skipped);
        }
        let run = fold_until_caught_up(
            self.store.as_ref(),
            self.clock.as_ref(),
            &self.metrics,
            self.config,
            || async {
                let now = self.clock.now();
                self.store
                    .take_lease(JOB, self.holder, now, now + LEASE)
                    .await
            },
        )
        .await;
        if let Err(error) = self.store.release_lease(JOB, self.holder).await {
            tracing::warn!(%error, "cannot give the rollups' lease up; it runs out by itself");
        }
        run.map(RollupRun::Done)
    }
}

/// Folds step after step while `renew` says the caller may, until caught up; answers the last
/// step, with every step's hours added up.
pub async fn fold_until_caught_up<F, R>(
    store: &dyn DataLifecycle,
    clock: &dyn Clock,
    metrics: &Metrics,
    config: RollupConfig,
    renew: F,
) -> Result<FoldStep, StoreError>
where
    F: Fn() -> R,
    R: std::future::Future<Output = Result<bool, StoreError>>,
{
    let mut hours = 0;
    loop {
        let step = store
            .fold_rollups(clock.now(), config.settle, config.hours_per_step)
            .await?;
        hours += step.hours;
        metrics.rollup_watermark(step.watermark);
        if step.hours > 0 {
            tracing::info!(
                hours = step.hours,
                watermark = ?step.watermark,
                "hours folded into the reports' rollups"
            );
        }
        if step.caught_up || !renew().await? {
            return Ok(FoldStep { hours, ..step });
        }
    }
}
