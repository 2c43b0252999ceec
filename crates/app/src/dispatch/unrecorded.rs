//! Outcomes of sends that the provider answered while the database was down. Lost, their
//! messages would stay `sending` until the lease ran out and then be sent again; kept here and
//! written when the database returns (before the dispatcher claims anything, so that no claim
//! can take one of their messages first), those messages are sent once. Kept in memory only,
//! and bounded: a process that dies with some, or one past the bound, falls back to the lease,
//! at least once as before, and says so in the log and `sms_notify_dispatch_outcomes_dropped`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use domain::{Attempt, MessageId};
use ports::{ClaimToken, DispatchOutcome, MessageStore, StoreError};

use crate::observability::metrics::Metrics;

/// The most outcomes kept. The dispatcher claims nothing while any are kept, so they come
/// from the sends in flight when the database went away (at most `DISPATCH_CONCURRENCY`);
/// the bound guards memory against whatever else.
pub const CAPACITY: usize = 10_000;

/// One `MessageStore::finish` that could not be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Unrecorded {
    pub claim: ClaimToken,
    pub id: MessageId,
    pub attempt: Option<Attempt>,
    pub outcome: DispatchOutcome,
    pub finished_at: DateTime<Utc>,
}

/// The outcomes waiting for the database, oldest first. Shared by a dispatcher's workers.
pub struct UnrecordedOutcomes {
    kept: Mutex<VecDeque<Unrecorded>>,
    capacity: usize,
    metrics: Option<Arc<Metrics>>,
}

impl UnrecordedOutcomes {
    pub fn new(capacity: usize, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            kept: Mutex::new(VecDeque::new()),
            capacity,
            metrics,
        }
    }

    /// Keeps `outcome` until [`Self::write`]; when the bound is reached it is dropped
    /// instead, and its message will be sent again once its lease runs out.
    pub fn keep(&self, outcome: Unrecorded) {
        let mut kept = self.kept();
        if kept.len() >= self.capacity {
            drop(kept);
            tracing::error!(
                message_id = %outcome.id,
                capacity = self.capacity,
                "too many outcomes waiting for the database; this one is dropped and its message will be sent again when its lease runs out"
            );
            if let Some(metrics) = &self.metrics {
                metrics.dispatch_outcome_dropped();
            }
            return;
        }
        kept.push_back(outcome);
        let waiting = kept.len();
        drop(kept);
        tracing::warn!(waiting, "outcome kept until the database answers again");
        if let Some(metrics) = &self.metrics {
            metrics.dispatch_outcome_deferred();
        }
    }

    pub fn len(&self) -> usize {
        self.kept().len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept().is_empty()
    }

    /// Writes every kept outcome, oldest first, and answers how many were written. Stops at
    /// the first that the store cannot take, keeping it and those after it.
    pub async fn write(&self, store: &dyn MessageStore) -> Result<usize, StoreError> {
        let mut written = 0;
        loop {
            let Some(next) = self.kept().front().cloned() else {
                break;
            };
            let recorded = store
                .finish(
                    next.claim,
                    next.id,
                    next.attempt,
                    next.outcome,
                    next.finished_at,
                )
                .await?;
            if !recorded {
                tracing::warn!(message_id = %next.id, "claim lost before the kept outcome was written");
            }
            self.kept().pop_front();
            written += 1;
        }
        if written > 0 {
            tracing::info!(written, "outcomes kept during the outage written");
        }
        Ok(written)
    }

    fn kept(&self) -> MutexGuard<'_, VecDeque<Unrecorded>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use ports::MockMessageStore;

    use super::*;

    fn unrecorded(n: u128) -> Unrecorded {
        Unrecorded {
            claim: ClaimToken(n),
            id: MessageId::generate(),
            attempt: None,
            outcome: DispatchOutcome::Expired,
            finished_at: DateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn kept_outcomes_are_written_in_order_and_those_the_store_refuses_stay() {
        let outcomes = UnrecordedOutcomes::new(10, None);
        for n in 1..=3 {
            outcomes.keep(unrecorded(n));
        }
        let mut down = MockMessageStore::new();
        let written = Arc::new(Mutex::new(Vec::new()));
        let seen = written.clone();
        down.expect_finish()
            .times(2)
            .returning(move |claim, _, _, _, _| {
                if claim == ClaimToken(2) {
                    return Err(StoreError::Unavailable("connection refused".into()));
                }
                seen.lock().unwrap().push(claim);
                Ok(true)
            });
        assert!(outcomes.write(&down).await.is_err());
        assert_eq!(*written.lock().unwrap(), [ClaimToken(1)]);
        assert_eq!(
            outcomes.len(),
            2,
            "the refused one and the one after it are kept"
        );

        let mut back = MockMessageStore::new();
        let seen = written.clone();
        back.expect_finish()
            .times(2)
            .returning(move |claim, _, _, _, _| {
                seen.lock().unwrap().push(claim);
                Ok(claim != ClaimToken(3))
            });
        assert_eq!(outcomes.write(&back).await.unwrap(), 2);
        assert_eq!(
            *written.lock().unwrap(),
            [ClaimToken(1), ClaimToken(2), ClaimToken(3)]
        );
        assert!(outcomes.is_empty(), "a lost claim is not tried again");
    }

    #[test]
    fn past_the_bound_an_outcome_is_dropped_and_counted() {
        let metrics = Arc::new(Metrics::new());
        let outcomes = UnrecordedOutcomes::new(2, Some(metrics.clone()));
        for n in 1..=3 {
            outcomes.keep(unrecorded(n));
        }
        assert_eq!(outcomes.len(), 2);
        let text = metrics.encode_counters();
        assert!(
            text.contains("sms_notify_dispatch_outcomes_dropped_total 1"),
            "{text}"
        );
        assert!(
            text.contains("sms_notify_dispatch_outcomes_deferred_total 2"),
            "{text}"
        );
    }
}
