//! What both stores decide alike about the reports' hourly rollups: which hours a fold may
//! take (only clean ones), and how a report's range splits between the rollups (whole hours
//! before the watermark) and the raw rows (the edges and the hours after it).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound as _, NaiveDateTime, TimeDelta, Utc};

use crate::params::Param;
use crate::{ConversionCount, HourFigures, UsageGroup};

/// One hour, the rollups' step.
pub const HOUR: TimeDelta = TimeDelta::hours(1);

/// The UTC hour `at` falls in.
pub fn floor_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(HOUR).unwrap_or(at)
}

/// The first hour that starts at or after `at`.
pub fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_hour(at);
    if floor == at {
        at
    } else {
        floor + HOUR
    }
}

/// Where a fold may go up to: the start of the last hour that is clean, i.e. older than
/// `settle` and without a message still queued or in flight (its own hour or its
/// verification's) or a verification still pending and not yet expired: those change without a
/// delivery receipt, which is all a folded hour follows. (A pending verification past its
/// expiry can no longer be approved; its being marked `expired` changes no figure.)
pub fn fold_target(
    now: DateTime<Utc>,
    settle: TimeDelta,
    oldest_open_message: Option<DateTime<Utc>>,
    oldest_pending_verification: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let mut until = now - settle;
    for open in [oldest_open_message, oldest_pending_verification]
        .into_iter()
        .flatten()
    {
        until = until.min(open);
    }
    floor_hour(until)
}

/// Where one fold call goes: from the watermark (or the hour of the oldest row, before the
/// first fold) to `target`, at most `max_hours` at once. `None`: nothing to fold.
pub fn fold_step(
    watermark: Option<DateTime<Utc>>,
    oldest_row: Option<DateTime<Utc>>,
    target: DateTime<Utc>,
    max_hours: u32,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let from = match (watermark, oldest_row) {
        (Some(watermark), _) => watermark,
        (None, Some(oldest)) => floor_hour(oldest).min(target),
        (None, None) => target,
    };
    let to = target.min(from + HOUR * i32::try_from(max_hours.max(1)).unwrap_or(i32::MAX));
    (to > from || watermark.is_none()).then_some((from, to.max(from)))
}

/// What one fold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldStep {
    /// Every hour before it is in the rollups (`None`: nothing folded yet).
    pub watermark: Option<DateTime<Utc>>,
    /// Hours folded by this call.
    pub hours: u64,
    /// Whether the watermark reached the last clean hour (no call would fold more now).
    pub caught_up: bool,
}

/// How a report over `[since, until)` reads: raw rows in `[since, folded_from)` and
/// `[folded_to, until)`; rollups of the whole folded hours `[folded_from, folded_to)`, and the
/// rollups at or after `tail` (what retention or an erasure removed from hours not folded yet,
/// counted when their hour starts in the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupSplit {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub folded_from: DateTime<Utc>,
    pub folded_to: DateTime<Utc>,
    pub tail: DateTime<Utc>,
}

impl RollupSplit {
    pub fn new(
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> Self {
        let folded_from = ceil_hour(since).min(until).max(since);
        let folded_to = match watermark {
            Some(watermark) => floor_hour(until).min(watermark).max(folded_from),
            None => folded_from,
        };
        let tail = watermark.map_or(since, |watermark| watermark.max(since));
        Self {
            since,
            until,
            folded_from,
            folded_to,
            tail,
        }
    }

    /// The statements' parameters: `$1` since, `$2` until, `$3` the API key or none, `$4`
    /// folded_from, `$5` folded_to, `$6` tail. Raw rows: `(t >= $1 AND t < $4) OR (t >= $5 AND
    /// t < $2)`; rollups: `(hour >= $4 AND hour < $5) OR (hour >= $6 AND hour < $2)`.
    pub fn params<'a>(&self, api_key: Option<&'a str>) -> [Param<'a>; 6] {
        [
            Param::time(self.since),
            Param::time(self.until),
            Param::Text(api_key),
            Param::time(self.folded_from),
            Param::time(self.folded_to),
            Param::time(self.tail),
        ]
    }
}

/// The raw rows' condition of [`RollupSplit::params`], on the time column `at`.
pub fn raw_rows(at: &str) -> String {
    format!("(({at} >= $1 AND {at} < $4) OR ({at} >= $5 AND {at} < $2))")
}

/// The rollups' condition of [`RollupSplit::params`].
pub const ROLLUP_ROWS: &str = "((hour >= $4 AND hour < $5) OR (hour >= $6 AND hour < $2))";

/// The overview's series from the usage and conversion figures grouped by hour (keys
/// `YYYY-MM-DDTHH`, UTC), merged per hour, oldest first. A key that is no hour is skipped.
pub fn hourly_series(
    usage: &[UsageGroup],
    conversion: &[ConversionCount],
) -> Vec<(DateTime<Utc>, HourFigures)> {
    let hour = |key: &Option<String>| {
        key.as_deref()
            .and_then(|key| {
                NaiveDateTime::parse_from_str(&format!("{key}:00"), "%Y-%m-%dT%H:%M").ok()
            })
            .map(|naive| naive.and_utc())
    };
    let mut series: BTreeMap<DateTime<Utc>, HourFigures> = BTreeMap::new();
    for group in usage {
        if let Some(at) = hour(&group.key) {
            let figures = series.entry(at).or_default();
            figures.messages += group.messages;
            figures.segments += group.segments;
            figures.delivered += group.delivered;
            figures.failed += group.failed;
        }
    }
    for group in conversion {
        if let Some(at) = hour(&group.key) {
            let figures = series.entry(at).or_default();
            figures.started += group.started;
            figures.codes_sent += group.codes_sent;
            figures.approved += group.approved;
        }
    }
    series.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_range_reads_whole_folded_hours_from_the_rollups_and_its_edges_raw() {
        let split = RollupSplit::new(
            at("2026-01-01T10:30:00Z"),
            at("2026-01-01T15:10:00Z"),
            Some(at("2026-01-01T14:00:00Z")),
        );
        assert_eq!(split.folded_from, at("2026-01-01T11:00:00Z"));
        assert_eq!(split.folded_to, at("2026-01-01T14:00:00Z"));
        assert_eq!(split.tail, at("2026-01-01T14:00:00Z"));
    }

    #[test]
    fn nothing_folded_reads_every_row_raw_and_every_rollup_of_removed_rows() {
        let since = at("2026-01-01T10:30:00Z");
        let split = RollupSplit::new(since, at("2026-01-01T15:10:00Z"), None);
        assert_eq!(split.folded_from, split.folded_to);
        assert_eq!(split.tail, since);
    }

    #[test]
    fn a_range_within_one_hour_is_read_raw() {
        let split = RollupSplit::new(
            at("2026-01-01T10:10:00Z"),
            at("2026-01-01T10:50:00Z"),
            Some(at("2026-01-02T00:00:00Z")),
        );
        assert_eq!(split.folded_from, split.folded_to);
        assert_eq!(split.folded_from, at("2026-01-01T10:50:00Z"));
        assert!(split.tail >= split.until);
    }

    #[test]
    fn a_fold_stops_before_the_oldest_open_message_and_pending_verification() {
        let now = at("2026-01-01T12:30:00Z");
        let settle = TimeDelta::hours(2);
        assert_eq!(
            fold_target(now, settle, None, None),
            at("2026-01-01T10:00:00Z")
        );
        assert_eq!(
            fold_target(now, settle, Some(at("2026-01-01T08:20:00Z")), None),
            at("2026-01-01T08:00:00Z")
        );
        assert_eq!(
            fold_target(now, settle, None, Some(at("2026-01-01T09:59:00Z"))),
            at("2026-01-01T09:00:00Z")
        );
    }

    #[test]
    fn the_first_fold_starts_at_the_oldest_row_and_takes_at_most_max_hours() {
        let target = at("2026-01-10T00:00:00Z");
        let (from, to) = fold_step(None, Some(at("2026-01-01T10:20:00Z")), target, 24).unwrap();
        assert_eq!(from, at("2026-01-01T10:00:00Z"));
        assert_eq!(to, at("2026-01-02T10:00:00Z"));
        assert_eq!(fold_step(Some(target), None, target, 24), None);
        assert_eq!(fold_step(None, None, target, 24), Some((target, target)));
    }
}
