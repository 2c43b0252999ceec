//! How the background loops wait after the database fails: exponentially longer, up to a cap,
//! so that an outage costs a few attempts and log lines rather than a loop retrying flat out,
//! while the cap keeps the first attempt after the database returns within seconds of it.
//! A loop that polls on an interval of its own never waits less than that interval after a
//! failure: the backoff only ever makes a loop ask the database less often.

use std::time::Duration;

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest wait: the most a loop lags behind a database that has come back.
pub const CAP: Duration = Duration::from_secs(2);

/// The waits of one loop: [`FIRST`] (or the loop's own interval, when longer), doubled after
/// each failure in a row, at most [`CAP`] (or that interval, when longer).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub const fn new() -> Self {
        Self::after(FIRST)
    }

    /// For a loop that polls every `interval`: its first wait after a failure is `interval`
    /// when that is longer than [`FIRST`], and its waits grow to [`CAP`] or `interval`,
    /// whichever is longer.
    pub const fn after(interval: Duration) -> Self {
        let first = if interval.as_nanos() > FIRST.as_nanos() {
            interval
        } else {
            FIRST
        };
        Self {
            first,
            next: first,
            failures: 0,
        }
    }

    /// Notes a failure and answers how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(CAP.max(self.first));
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Notes a success; answers how many failures in a row it ends (0: none), for the one
    /// line that says the loop has recovered.
    pub fn succeeded(&mut self) -> u32 {
        let ended = self.failures;
        *self = Self::after(self.first);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_each_failure_up_to_the_cap_and_start_over_after_a_success() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..7).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 2_000, 2_000]);
        assert_eq!(backoff.succeeded(), 7);
        assert_eq!(backoff.failed(), FIRST);
        assert_eq!(backoff.succeeded(), 1);
        assert_eq!(backoff.succeeded(), 0);
    }

    #[test]
    fn a_loop_with_an_interval_of_its_own_never_waits_less_than_it() {
        let waits = |interval: u64| {
            let mut backoff = Backoff::after(Duration::from_millis(interval));
            let waits: Vec<u128> = (0..5).map(|_| backoff.failed().as_millis()).collect();
            backoff.succeeded();
            assert_eq!(backoff.failed().as_millis(), waits[0], "{interval}");
            waits
        };
        assert_eq!(waits(250), [250, 500, 1_000, 2_000, 2_000]);
        assert_eq!(waits(1_000), [1_000, 2_000, 2_000, 2_000, 2_000]);
        assert_eq!(waits(15_000), [15_000; 5]);
        assert_eq!(waits(10), [100, 200, 400, 800, 1_600]);
    }
}
