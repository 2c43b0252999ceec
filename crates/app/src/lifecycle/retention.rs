//! The retention job: every interval, the instance that takes the job's lease creates the
//! coming weeks' partitions (PostgreSQL), brings the reports' rollups up to date (so that what
//! it removes is counted in them already), removes the rows older than the retention (whole
//! weeks of partitions, then the rest in batches), then empties the bodies of plain messages
//! older than the body retention. The other instances skip while it runs. Time comes from the
//! injected `Clock`, so tests move it instead of waiting.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ports::{Clock, DataLifecycle, LeaseHolder, Removed, Retained, StoreError};
use tokio::sync::watch;

use crate::lifecycle::rollups::{fold_until_caught_up, RollupConfig};
use crate::observability::metrics::Metrics;

/// The lease's name: one retention run at a time across every instance.
const JOB: &str = "retention";
/// How long a lease lasts without renewal; each batch renews it, so only a holder that stopped
/// (crashed, or cut off from the database) lets it run out.
const LEASE: TimeDelta = TimeDelta::minutes(5);
/// A progress line every this many batches of a kind, besides the run's summary.
const PROGRESS_EVERY: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Rows created longer ago are removed (`RETENTION_DAYS`).
    pub retention: TimeDelta,
    /// Plain messages' bodies created longer ago are emptied (`MESSAGE_BODY_RETENTION_HOURS`).
    pub body_retention: TimeDelta,
    /// How often each instance tries to run the job.
    pub interval: Duration,
    /// Rows per batch: each batch is one short transaction.
    pub batch: u32,
    /// Between batches, so that a long run leaves the database (SQLite's one writer above
    /// all) to the API in between.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            retention: TimeDelta::days(90),
            body_retention: TimeDelta::hours(72),
            interval: Duration::from_secs(3600),
            batch: 1000,
            pause: Duration::from_millis(20),
        }
    }
}

/// What one call of [`RetentionJob::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionRun {
    /// Another instance holds the job's lease.
    Skipped,
    Done {
        removed: Removed,
        bodies_emptied: u64,
    },
}

pub struct RetentionJob {
    store: Arc<dyn DataLifecycle>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: RetentionConfig,
    /// This instance, as the lease knows it.
    holder: LeaseHolder,
}

impl RetentionJob {
    pub fn new(
        store: Arc<dyn DataLifecycle>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: RetentionConfig,
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
        super::every("retention", self.config.interval, shutdown, || {
            self.run_once()
        })
        .await;
    }

    /// One run, if this instance takes the lease: every kind of row past the retention, then
    /// the bodies past the body retention. The lease is given up at the end.
    pub async fn run_once(&self) -> Result<RetentionRun, StoreError> {
        let now = self.clock.now();
        if !self
            .store
            .take_lease(JOB, self.holder, now, now + LEASE)
            .await?
        {
            tracing::debug!("retention is running on another instance; skipped");
            return Ok(RetentionRun::Skipped);
        }
        // Weeks ahead of need: a failure here only delays them to the next run, and a row
        // without its week is still stored (in the DEFAULT partition).
        match self.store.prepare_partitions().await {
            Ok(0) => {}
            Ok(created) => tracing::info!(created, "partitions created for the coming weeks"),
            Err(error) => tracing::warn!(
                %error,
                "cannot create the coming weeks' partitions; trying again at the next run"
            ),
        }
        // What is about to be removed is folded first (nothing to do while the rollup job
        // keeps up): a removed row then needs no fold of its own, and its verification's
        // conversion figures are read while its messages are still there.
        if let Err(error) = fold_until_caught_up(
            self.store.as_ref(),
            self.clock.as_ref(),
            &self.metrics,
            RollupConfig::default(),
            || self.renew(),
        )
        .await
        {
            tracing::warn!(%error, "cannot fold the reports' rollups before removing rows");
        }
        let run = self.sweep(now).await;
        if let Err(error) = self.store.release_lease(JOB, self.holder).await {
            tracing::warn!(%error, "cannot give the retention lease up; it runs out by itself");
        }
        run
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<RetentionRun, StoreError> {
        let before = now - self.config.retention;
        let mut removed = Removed::default();
        for kind in Retained::ALL {
            let mut batches = 0;
            loop {
                if !self.renew().await? {
                    return Ok(self.done(removed, 0, "lost its lease"));
                }
                let batch = self
                    .store
                    .remove_expired(kind, before, self.config.batch)
                    .await?;
                for (name, count) in batch.kinds() {
                    self.metrics.data_removed(name, "retention", count);
                }
                removed.add(batch);
                batches += 1;
                if batches % PROGRESS_EVERY == 0 {
                    tracing::info!(
                        kind = kind.as_str(),
                        batches,
                        rows_so_far = removed.rows(),
                        "retention removing rows"
                    );
                }
                if rows_of(kind, &batch) < u64::from(self.config.batch) {
                    break;
                }
                tokio::time::sleep(self.config.pause).await;
            }
        }
        let bodies_before = now - self.config.body_retention;
        let mut bodies_emptied = 0;
        loop {
            if !self.renew().await? {
                return Ok(self.done(removed, bodies_emptied, "lost its lease"));
            }
            let emptied = self
                .store
                .empty_bodies(bodies_before, self.config.batch)
                .await?;
            self.metrics
                .data_removed("message_bodies", "retention", emptied);
            bodies_emptied += emptied;
            if emptied < u64::from(self.config.batch) {
                break;
            }
            tokio::time::sleep(self.config.pause).await;
        }
        Ok(self.done(removed, bodies_emptied, "done"))
    }

    /// Extends the lease before a batch; `false` when another instance took it over (this one
    /// was too slow to renew), which then finishes the work.
    async fn renew(&self) -> Result<bool, StoreError> {
        let now = self.clock.now();
        self.store
            .take_lease(JOB, self.holder, now, now + LEASE)
            .await
    }

    fn done(&self, removed: Removed, bodies_emptied: u64, how: &str) -> RetentionRun {
        let [messages, attempts, delivery_events, verifications, codes, decisions] =
            removed.kinds().map(|(_, count)| count);
        tracing::info!(
            how,
            messages,
            attempts,
            delivery_events,
            verifications,
            verification_codes = codes,
            fraud_decisions = decisions,
            bodies_emptied,
            retention_days = self.config.retention.num_days(),
            "retention run finished"
        );
        RetentionRun::Done {
            removed,
            bodies_emptied,
        }
    }
}

/// The rows of `kind` itself in `removed` (not its children), which say whether its batch was
/// full.
fn rows_of(kind: Retained, removed: &Removed) -> u64 {
    match kind {
        Retained::Messages => removed.messages,
        Retained::Verifications => removed.verifications,
        Retained::FraudDecisions => removed.fraud_decisions,
    }
}
