//! What the operator's overview shows at a glance, read in one place: the usage and conversion
//! reports' figures over the last day and week hour by hour (one statement per figure set over
//! the week, on the rollups and the raw hours after them; the day is its last 24 hours) and
//! over the week day by day, the queue, the fraud guard's blocks and decisions, and today's
//! spend against the daily budget. Each figure is one the API's reports and gauges give too,
//! aggregated by the store; nothing here reads whole tables.

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

/// Verifications started in a range, as the conversion report counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    pub started: u64,
    /// Code messages a provider accepted.
    pub codes_sent: u64,
    pub approved: u64,
}

impl Funnel {
    /// Approved per verification started, as the conversion report's `conversion_rate`;
    /// `None` without verifications.
    pub fn rate(&self) -> Option<f64> {
        (self.started > 0).then(|| self.approved as f64 / self.started as f64)
    }
}

/// One step of a series: the messages and verifications created in `[start, start + step)`
/// (the day-by-day series counts messages only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub totals: Totals,
    pub funnel: Funnel,
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
    /// The last 168 hours (7 days), hour by hour, oldest first, ending as `hourly` does.
    pub weekly_hourly: Vec<Bucket>,
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
}

/// Hours in the week-long hourly series.
pub const WEEK_HOURS: i64 = 168;

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
        let first_hour = this_hour - TimeDelta::hours(WEEK_HOURS - 1);
        let figures = self
            .reports
            .hourly(first_hour, this_hour + TimeDelta::hours(1))
            .await?;
        let weekly_hourly: Vec<Bucket> = (0..WEEK_HOURS)
            .map(|hour| {
                let start = first_hour + TimeDelta::hours(hour);
                let found = figures
                    .iter()
                    .find(|(at, _)| *at == start)
                    .map(|(_, figures)| *figures)
                    .unwrap_or_default();
                Bucket {
                    start,
                    totals: Totals {
                        messages: found.messages,
                        segments: found.segments,
                        delivered: found.delivered,
                        failed: found.failed,
                    },
                    funnel: Funnel {
                        started: found.started,
                        codes_sent: found.codes_sent,
                        approved: found.approved,
                    },
                }
            })
            .collect();
        let hourly = weekly_hourly[weekly_hourly.len().saturating_sub(24)..].to_vec();
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
                Bucket {
                    start,
                    totals,
                    funnel: Funnel::default(),
                }
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
            weekly_hourly,
            daily,
            queue,
            spend,
            blocks,
            decisions,
            decisions_capped,
        })
    }
}
