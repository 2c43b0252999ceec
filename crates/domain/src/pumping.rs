//! The SMS pumping alarm: fraudsters make a service send codes to numbers they are paid for,
//! which shows as sends to one country calling code jumping far above their usual rate.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// How far back the usual rate of a calling code is measured.
pub fn baseline_period() -> TimeDelta {
    TimeDelta::days(7)
}

/// When sends to one calling code count as a surge, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpingPolicy {
    /// A surge is more sends in the last hour than this multiple of the usual hourly rate.
    pub surge_multiple: u32,
    /// Fewer sends than this in an hour are never a surge: small counts swing widely, and a
    /// destination with no history would otherwise alarm at its first sends.
    pub min_sends: u64,
    /// Refuse new codes to a calling code while it surges, rather than only raising the alarm.
    pub refuse: bool,
}

impl Default for PumpingPolicy {
    fn default() -> Self {
        Self {
            surge_multiple: 5,
            min_sends: 20,
            refuse: false,
        }
    }
}

/// Sends to one calling code in the hour starting at `hour`, as the store counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlySends {
    pub hour: DateTime<Utc>,
    pub sends: u64,
}

/// The start of the hour `now` is in: the store counts sends per hour.
pub fn hour_of(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now)
}

/// Sends to one calling code lately against its usual rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Sends in the sixty minutes before now, estimated from the hourly counts: this hour's,
    /// plus the previous hour's in proportion to the part of it still inside the window.
    pub last_hour: u64,
    /// Mean sends per hour before the previous hour, over the baseline period (or the
    /// calling code's history, when shorter).
    pub usual_per_hour: f64,
}

impl Traffic {
    pub fn from_hourly(hourly: &[HourlySends], now: DateTime<Utc>) -> Self {
        let this_hour = hour_of(now);
        let previous_hour = this_hour - TimeDelta::hours(1);
        let sends_in = |hour: DateTime<Utc>| -> u64 {
            hourly
                .iter()
                .filter(|bucket| bucket.hour == hour)
                .map(|bucket| bucket.sends)
                .sum()
        };
        let elapsed = (now - this_hour).num_milliseconds() as f64 / 3_600_000.0;
        let last_hour =
            sends_in(this_hour) as f64 + sends_in(previous_hour) as f64 * (1.0 - elapsed);

        let earlier: Vec<&HourlySends> = hourly
            .iter()
            .filter(|bucket| {
                bucket.hour < previous_hour && bucket.hour >= this_hour - baseline_period()
            })
            .collect();
        let usual_per_hour = match earlier.iter().map(|bucket| bucket.hour).min() {
            None => 0.0,
            Some(oldest) => {
                let hours = (previous_hour - oldest).num_hours().max(1);
                earlier.iter().map(|bucket| bucket.sends).sum::<u64>() as f64 / hours as f64
            }
        };
        Self {
            last_hour: last_hour.round() as u64,
            usual_per_hour,
        }
    }
}

impl PumpingPolicy {
    pub fn is_surge(&self, traffic: &Traffic) -> bool {
        traffic.last_hour >= self.min_sends
            && traffic.last_hour as f64 > f64::from(self.surge_multiple) * traffic.usual_per_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hourly(now: DateTime<Utc>, counts: &[(i64, u64)]) -> Vec<HourlySends> {
        counts
            .iter()
            .map(|&(hours_ago, sends)| HourlySends {
                hour: hour_of(now) - TimeDelta::hours(hours_ago),
                sends,
            })
            .collect()
    }

    #[test]
    fn the_last_hour_takes_the_part_of_the_previous_hour_still_inside_it() {
        let now = at("2026-01-01T12:15:00Z");
        let traffic = Traffic::from_hourly(&hourly(now, &[(0, 10), (1, 40)]), now);
        // 10 this hour, and three quarters of the previous hour's 40.
        assert_eq!(traffic.last_hour, 40);
        assert_eq!(traffic.usual_per_hour, 0.0);
    }

    #[test]
    fn the_usual_rate_is_the_mean_over_the_history_before_the_last_hour() {
        let now = at("2026-01-01T12:00:00Z");
        // Ten hours of history two to eleven hours ago, 3 sends each; older than a week is
        // ignored.
        let mut counts: Vec<(i64, u64)> = (2..=11).map(|hours_ago| (hours_ago, 3)).collect();
        counts.push((24 * 8, 1_000));
        let traffic = Traffic::from_hourly(&hourly(now, &counts), now);
        assert_eq!(traffic.usual_per_hour, 3.0);
    }

    #[test]
    fn a_jump_far_above_the_usual_rate_is_a_surge() {
        let policy = PumpingPolicy::default();
        let usual = Traffic {
            last_hour: 30,
            usual_per_hour: 10.0,
        };
        assert!(!policy.is_surge(&usual));
        let jump = Traffic {
            last_hour: 51,
            usual_per_hour: 10.0,
        };
        assert!(policy.is_surge(&jump));
    }

    #[test]
    fn a_few_sends_are_never_a_surge() {
        let policy = PumpingPolicy::default();
        let new_destination = Traffic {
            last_hour: 19,
            usual_per_hour: 0.0,
        };
        assert!(!policy.is_surge(&new_destination));
        assert!(policy.is_surge(&Traffic {
            last_hour: 20,
            ..new_destination
        }));
    }
}
