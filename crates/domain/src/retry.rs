//! When to try a failed send again.

use std::time::Duration;

/// Exponential backoff with full jitter (the AWS Architecture Blog's recommendation): the delay
/// before retry `n` is uniform in `[0, min(cap, base * 2^(n-1))]`, which spreads a burst of
/// failures out instead of retrying them in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt is allowed after `attempts_made` attempts.
    pub fn allows_another(&self, attempts_made: u32) -> bool {
        attempts_made < self.max_attempts
    }

    /// The delay before the next attempt, after `attempts_made` failed ones. `jitter` is a
    /// uniform random number in `[0, 1)` supplied by the caller (this crate has no randomness);
    /// a provider's `Retry-After` wins when it asks for longer, up to `cap`: the provider's
    /// word does not hold a message back for days.
    pub fn delay(
        &self,
        attempts_made: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let exponent = attempts_made.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(asked) if asked > jittered => asked.min(self.cap),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_policy() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts, 6);
        assert!(policy.allows_another(5));
        assert!(!policy.allows_another(6));
    }

    #[test]
    fn the_ceiling_doubles_with_each_attempt_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, 1.0, None), Duration::from_secs(2));
        assert_eq!(policy.delay(2, 1.0, None), Duration::from_secs(4));
        assert_eq!(policy.delay(5, 1.0, None), Duration::from_secs(32));
        assert_eq!(policy.delay(20, 1.0, None), Duration::from_secs(300));
    }

    #[test]
    fn jitter_scales_the_delay_from_zero_to_the_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(policy.delay(3, 0.5, None), Duration::from_secs(4));
    }

    #[test]
    fn a_longer_retry_after_wins_and_a_shorter_one_does_not() {
        let policy = RetryPolicy::default();
        let long = Duration::from_secs(60);
        assert_eq!(policy.delay(1, 1.0, Some(long)), long);
        assert_eq!(
            policy.delay(3, 1.0, Some(Duration::from_secs(1))),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn a_retry_after_beyond_the_cap_waits_the_cap() {
        let policy = RetryPolicy::default();
        for asked in [Duration::from_secs(999_999), Duration::MAX] {
            assert_eq!(policy.delay(1, 0.5, Some(asked)), policy.cap);
        }
    }
}
