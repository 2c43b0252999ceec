//! The use cases against a real store (SQLite in memory), real adapters talking to wiremock, and
//! a clock the test moves, so that time-dependent rules are tested without waiting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod budgets;
mod failover;
mod reconcile;
mod retention;
mod unanswered;
mod verification;
mod workflows;

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use ports::Clock;

/// A clock that stands still until the test moves it.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// 2026-01-01T12:00:00Z.
    pub fn at_t0() -> Self {
        Self(Mutex::new(
            DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ))
    }

    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}
