//! The reports' rollups on demand: fold every clean hour now (what the bench calls after
//! generating its rows, and the CLI's `report fold`), and where folding has reached.

use chrono::{DateTime, TimeDelta, Utc};
use ports::{FoldStep, StoreError};

use crate::lifecycle::rollups::{fold_until_caught_up, RollupConfig};
use crate::usecases::Services;

impl Services {
    /// Folds every hour that ended at least `settle` ago (and holds nothing still queued, in
    /// flight or pending) into the rollups, a week per transaction, without the job's lease:
    /// two folds at once only wait for each other. Answers the last step, with every step's
    /// hours added up.
    pub async fn fold_rollups(&self, settle: TimeDelta) -> Result<FoldStep, StoreError> {
        let config = RollupConfig {
            settle,
            ..RollupConfig::default()
        };
        fold_until_caught_up(
            self.lifecycle.as_ref(),
            self.clock.as_ref(),
            &self.metrics,
            config,
            || async { Ok::<bool, StoreError>(true) },
        )
        .await
    }

    /// Every hour before it is in the rollups; `None` before the first fold.
    pub async fn rollup_watermark(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.lifecycle.rollup_watermark().await
    }
}
