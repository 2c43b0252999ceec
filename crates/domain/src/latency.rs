//! Latencies kept as counts in fixed buckets: counts add up across rows, hours and groups, so a
//! report sums them wherever they were counted and estimates a percentile from the sums alone,
//! never from the individual times.

/// The buckets' upper bounds in milliseconds, each exclusive: bucket `i` holds the times from
/// the bound before it (0 for the first) up to `BOUNDS_MS[i]`; one more bucket holds the rest.
/// Dense where codes are usually entered or delivered (seconds), sparse past an hour.
pub const BOUNDS_MS: [u64; 22] = [
    50, 100, 250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 45_000,
    60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000, 21_600_000, 86_400_000,
];

/// How many buckets a histogram has: one per bound, and one past the last.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Counts of latencies per bucket of [`BOUNDS_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

impl LatencyHistogram {
    /// The bucket a latency of `millis` falls in.
    pub fn bucket_of(millis: u64) -> usize {
        BOUNDS_MS.partition_point(|&bound| bound <= millis)
    }

    pub fn record(&mut self, millis: u64) {
        self.add(Self::bucket_of(millis), 1);
    }

    /// Adds `count` latencies to bucket `bucket`; a bucket past the last counts in the last.
    pub fn add(&mut self, bucket: usize, count: u64) {
        let bucket = bucket.min(BUCKETS - 1);
        self.counts[bucket] = self.counts[bucket].saturating_add(count);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (bucket, count) in other.counts.iter().enumerate() {
            self.add(bucket, *count);
        }
    }

    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0, |sum, count| sum.saturating_add(*count))
    }

    /// The latency below which a share `quantile` (0 to 1) of the counted ones fall, estimated
    /// in milliseconds: within the bucket the rank lands in, as if its latencies were spread
    /// evenly between its bounds; the last bucket, without an upper bound, answers its lower
    /// one. `None` without latencies.
    pub fn percentile(&self, quantile: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = quantile.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (below + count) as f64 >= rank {
                let lower = bucket.checked_sub(1).map_or(0, |before| BOUNDS_MS[before]);
                let Some(&upper) = BOUNDS_MS.get(bucket) else {
                    return Some(lower);
                };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower + ((upper - lower) as f64 * within).round() as u64);
            }
            below += count;
        }
        Some(BOUNDS_MS[BOUNDS_MS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(latencies: &[u64]) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::default();
        for &millis in latencies {
            histogram.record(millis);
        }
        histogram
    }

    #[test]
    fn a_latency_on_a_bound_counts_in_the_bucket_that_bound_starts() {
        assert_eq!(LatencyHistogram::bucket_of(0), 0);
        assert_eq!(LatencyHistogram::bucket_of(49), 0);
        assert_eq!(LatencyHistogram::bucket_of(50), 1);
        assert_eq!(LatencyHistogram::bucket_of(5_000), 8);
        assert_eq!(LatencyHistogram::bucket_of(86_400_000), BUCKETS - 1);
        assert_eq!(LatencyHistogram::bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn no_latencies_have_no_percentile() {
        assert_eq!(LatencyHistogram::default().percentile(0.5), None);
    }

    #[test]
    fn a_percentile_is_spread_evenly_within_its_bucket() {
        // Four latencies between 10 and 15 seconds: the median halfway through the bucket.
        let histogram = of(&[10_000, 11_000, 12_000, 14_000]);
        assert_eq!(histogram.percentile(0.5), Some(12_500));
        assert_eq!(histogram.percentile(1.0), Some(15_000));
    }

    #[test]
    fn the_estimate_lies_in_the_bucket_of_the_true_percentile() {
        // 100 latencies of 1, 2, ..., 100 seconds.
        let latencies: Vec<u64> = (1..=100).map(|s| s * 1_000).collect();
        let histogram = of(&latencies);
        let p50 = histogram.percentile(0.5).unwrap();
        let p95 = histogram.percentile(0.95).unwrap();
        assert!((45_000..60_000).contains(&p50), "{p50}");
        assert!((60_000..=120_000).contains(&p95), "{p95}");
        assert!(p50 < p95);
    }

    #[test]
    fn latencies_past_the_last_bound_answer_the_last_bound() {
        let histogram = of(&[100_000_000, 200_000_000]);
        assert_eq!(histogram.percentile(0.95), Some(86_400_000));
    }

    #[test]
    fn merged_histograms_count_as_one() {
        let mut left = of(&[40, 900]);
        left.merge(&of(&[900, 30_000]));
        assert_eq!(left, of(&[40, 900, 900, 30_000]));
        assert_eq!(left.total(), 4);
        assert_eq!(left.percentile(0.5), Some(750));
    }
}
