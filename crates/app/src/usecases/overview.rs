//! What the operator's overview shows at a glance, read in one place: the usage report's
//! figures over the last day (hour by hour) and week (day by day), the queue, the fraud guard's
//! blocks and decisions, and today's spend against the daily budget. Each figure is one the
//! API's reports and gauges give too, aggregated by the store; nothing here reads whole tables.
//!
//! Conversion (issue 20's analytics) joins here once its use case exists: the field named in
//! [`Overview`]'s last comment.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use domain::fraud::Action;
use domain::Amount;
use ports::{DecisionFilter, QueueStats, StoreError, UsageGroup, UsageGrouping, UsageQuery};

use crate::usecases::Services;

/// How many of the day's fraud decisions the overview counts at most: a page of the log, so
/// that a day of attack does not make the page slow; more reads as "at least".
pub const DECISIONS_COUNTED: u32 = 1_000;

/// Messages created in a range: as many as the usage report counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub segments: u64,
    pub delivered: u64,
    /// Failed or undelivered.
    pub failed: u64,
}

impl Totals {
    fn of(groups: &[UsageGroup]) -> Self {
        groups.iter().fold(Self::default(), |sum, group| Self {
            messages: sum.messages + group.messages,
            segments: sum.segments + group.segments,
            delivered: sum.delivered + group.delivered,
            failed: sum.failed + group.failed,
        })
    }
}

/// One step of a series: the messages created in `[start, start + step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub totals: Totals,
}

/// Today's spend (since midnight UTC) against the daily budget of its currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub currency: String,
    pub spent: Amount,
    /// `DAILY_BUDGET`'s cap, when one is set.
    pub budget: Option<Amount>,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub now: DateTime<Utc>,
    /// `[now - 24h, now)`, as `GET /v1/reports/usage?since=24h` counts it.
    pub last_day: Totals,
    /// The last 24 hours, hour by hour, oldest first (the first from the hour `now - 23h`
    /// starts in, the last the hour now is in).
    pub hourly: Vec<Bucket>,
    /// The last 7 days, UTC day by UTC day, oldest first, today last.
    pub daily: Vec<Bucket>,
    pub queue: QueueStats,
    /// What providers charged today, per currency, with the budget of the budgets' currency.
    pub spend: Vec<Spend>,
    /// Blocks in force now.
    pub blocks: usize,
    /// The last 24 hours' fraud decisions by action (at most [`DECISIONS_COUNTED`] read).
    pub decisions: Vec<(Action, u64)>,
    /// Whether more decisions than were counted were taken.
    pub decisions_capped: bool,
    // Conversion per hour (issue 20) goes here once the analytics use case exists: a
    // `conversion: Vec<(DateTime<Utc>, Option<f64>)>` read from its rollups.
}

impl Services {
    /// The overview's figures now. Every key's messages: only admins see it.
    pub async fn overview(&self) -> Result<Overview, StoreError> {
        let now = self.clock.now();
        let range = |since: DateTime<Utc>, until: DateTime<Utc>, group_by| UsageQuery {
            since,
            until,
            group_by,
            api_key: None,
        };
        let last_day = Totals::of(
            &self
                .reports
                .usage(&range(
                    now - TimeDelta::hours(24),
                    now,
                    UsageGrouping::Status,
                ))
                .await?,
        );
        let this_hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let mut hourly = Vec::with_capacity(24);
        for back in (0..24).rev() {
            let start = this_hour - TimeDelta::hours(back);
            let groups = self
                .reports
                .usage(&range(
                    start,
                    start + TimeDelta::hours(1),
                    UsageGrouping::Status,
                ))
                .await?;
            hourly.push(Bucket {
                start,
                totals: Totals::of(&groups),
            });
        }
        let today = now.duration_trunc(TimeDelta::days(1)).unwrap_or(now);
        let week_start = today - TimeDelta::days(6);
        let by_day = self
            .reports
            .usage(&range(
                week_start,
                today + TimeDelta::days(1),
                UsageGrouping::Day,
            ))
            .await?;
        let daily = (0..7)
            .map(|day| {
                let start = week_start + TimeDelta::days(day);
                let key = start.format("%Y-%m-%d").to_string();
                let totals = by_day
                    .iter()
                    .find(|group| group.key.as_deref() == Some(key.as_str()))
                    .map(|group| Totals::of(std::slice::from_ref(group)))
                    .unwrap_or_default();
                Bucket { start, totals }
            })
            .collect();
        let queue = self.reports.queue_stats().await?;
        let costs = self
            .reports
            .costs(&range(today, now, UsageGrouping::Status))
            .await?;
        let mut spend: Vec<Spend> = Vec::new();
        for cost in costs {
            match spend.iter_mut().find(|sum| sum.currency == cost.currency) {
                Some(sum) => {
                    sum.spent = sum.spent.checked_add(cost.total).unwrap_or(sum.spent);
                }
                None => spend.push(Spend {
                    currency: cost.currency,
                    spent: cost.total,
                    budget: None,
                }),
            }
        }
        let budgets = &self.fraud_guard.budgets();
        if let Some(cap) = budgets.daily_total {
            match spend
                .iter_mut()
                .find(|sum| sum.currency == budgets.currency)
            {
                Some(sum) => sum.budget = Some(cap),
                None => spend.push(Spend {
                    currency: budgets.currency.clone(),
                    spent: Amount::ZERO,
                    budget: Some(cap),
                }),
            }
        }
        let blocks = self.fraud.blocks(now).await?.len();
        let logged = self
            .fraud
            .decisions(&DecisionFilter {
                action: None,
                since: Some(now - TimeDelta::hours(24)),
                until: None,
                before: None,
                limit: DECISIONS_COUNTED + 1,
            })
            .await?;
        let decisions_capped = logged.len() > DECISIONS_COUNTED as usize;
        let decisions = [Action::Allow, Action::Monitor, Action::Block]
            .into_iter()
            .map(|action| {
                let count = logged
                    .iter()
                    .take(DECISIONS_COUNTED as usize)
                    .filter(|logged| logged.decision.action == action)
                    .count() as u64;
                (action, count)
            })
            .collect();
        Ok(Overview {
            now,
            last_day,
            hourly,
            daily,
            queue,
            spend,
            blocks,
            decisions,
            decisions_capped,
        })
    }
}
