//! Usage reports for operators: messages, segments, delivery and errors over a time range, in
//! groups. Every figure is aggregated by the database.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use ports::{CostSum, ErrorCodeCount, UsageGroup, UsageGrouping, UsageQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiClient, ApiQuery, QueryTime};
use super::ApiError;
use crate::Services;

/// The range a report covers when the client gives no `since`.
const DEFAULT_RANGE_DAYS: i64 = 30;
/// Error codes listed per group.
const TOP_ERROR_CODES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The UTC day of creation, `YYYY-MM-DD`.
    Day,
    Template,
    /// The destination's ISO 3166 country code.
    Country,
    Status,
    ApiKey,
}

impl From<UsageGrouping> for GroupBy {
    fn from(grouping: UsageGrouping) -> Self {
        match grouping {
            UsageGrouping::Day => GroupBy::Day,
            UsageGrouping::Template => GroupBy::Template,
            UsageGrouping::Country => GroupBy::Country,
            UsageGrouping::Status => GroupBy::Status,
            UsageGrouping::ApiKey => GroupBy::ApiKey,
        }
    }
}

impl From<GroupBy> for UsageGrouping {
    fn from(group_by: GroupBy) -> Self {
        match group_by {
            GroupBy::Day => UsageGrouping::Day,
            GroupBy::Template => UsageGrouping::Template,
            GroupBy::Country => UsageGrouping::Country,
            GroupBy::Status => UsageGrouping::Status,
            GroupBy::ApiKey => UsageGrouping::ApiKey,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Messages created at or after (RFC 3339, or a period before now: `30m`, `24h`, `7d`);
    /// default `until` minus 30 days.
    #[param(value_type = Option<String>)]
    since: Option<QueryTime>,
    /// Messages created before (RFC 3339, or a period before now); default now.
    #[param(value_type = Option<String>)]
    until: Option<QueryTime>,
    /// Default `day`.
    group_by: Option<GroupBy>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorCodeView {
    pub code: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostView {
    pub currency: String,
    /// A decimal: the amount spent, positive whatever the provider's sign (`0.0079`).
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroupView {
    /// The group's value (`2026-01-31`, `two-factor-auth`, `GB`, `failed`, `billing`); null for
    /// messages without one (a plain body has no template).
    pub key: Option<String>,
    pub messages: u64,
    pub segments: u64,
    pub delivered: u64,
    /// Failed or undelivered.
    pub failed: u64,
    /// `delivered / (delivered + failed)`: the share of messages with a final carrier outcome
    /// that arrived; null while none has one.
    pub delivery_rate: Option<f64>,
    /// What the providers charged, per currency.
    pub cost: Vec<CostView>,
    /// The most frequent error codes, at most five.
    pub top_error_codes: Vec<ErrorCodeView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub group_by: GroupBy,
    pub groups: Vec<UsageGroupView>,
}

/// Usage over a time range, grouped by day, template, country, status or API key name: of the
/// caller's own messages, or every API key's for an admin key (`ADMIN_API_KEYS`).
#[utoipa::path(
    get,
    path = "/v1/reports/usage",
    tag = "reports",
    security(("api_key" = [])),
    params(UsageParams),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        (status = "default", description = "An error, naming the parameter when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn usage(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let (since, until) = report_range(services.now(), params.since, params.until)?;
    let group_by = params.group_by.unwrap_or(GroupBy::Day);
    let query = UsageQuery {
        since,
        until,
        group_by: group_by.into(),
        api_key: (!client.is_admin).then_some(client.name),
    };
    Ok(Json(usage_report(&services, &query).await?))
}

/// A report's `[since, until)` at `now`: `until` defaults to now, `since` to 30 days before
/// `until`; a 422 naming the parameter when they make no range.
pub(super) fn report_range(
    now: DateTime<Utc>,
    since: Option<QueryTime>,
    until: Option<QueryTime>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let until = until.map_or(now, |until| until.at(now));
    let since = match since {
        Some(since) => since.at(now),
        None => until
            .checked_sub_signed(TimeDelta::days(DEFAULT_RANGE_DAYS))
            .ok_or_else(|| {
                ApiError::invalid_field("until", "invalid-range", "`until` is too early")
            })?,
    };
    if since >= until {
        return Err(ApiError::invalid_field(
            "since",
            "invalid-range",
            "`since` must be before `until`",
        ));
    }
    Ok((since, until))
}

/// The report `query` asks for (`GET /v1/reports/usage`, `sms-notify report`).
pub async fn usage_report(
    services: &Services,
    query: &UsageQuery,
) -> Result<UsageReport, ports::StoreError> {
    let usage = services.usage(query).await?;
    Ok(UsageReport {
        since: query.since,
        until: query.until,
        group_by: query.group_by.into(),
        groups: assemble(usage.groups, usage.error_codes, &usage.costs),
    })
}

/// Joins each group with its most frequent error codes (which the store lists most frequent
/// first within a group) and its cost in each currency.
fn assemble(
    groups: Vec<UsageGroup>,
    error_codes: Vec<ErrorCodeCount>,
    costs: &[CostSum],
) -> Vec<UsageGroupView> {
    groups
        .into_iter()
        .map(|group| {
            let top_error_codes = error_codes
                .iter()
                .filter(|count| count.key == group.key)
                .take(TOP_ERROR_CODES)
                .map(|count| ErrorCodeView {
                    code: count.code.clone(),
                    count: count.count,
                })
                .collect();
            let cost = costs
                .iter()
                .filter(|cost| cost.key == group.key)
                .map(|cost| CostView {
                    currency: cost.currency.clone(),
                    amount: cost.total.to_string(),
                })
                .collect();
            let concluded = group.delivered + group.failed;
            UsageGroupView {
                delivery_rate: (concluded > 0).then(|| group.delivered as f64 / concluded as f64),
                key: group.key,
                messages: group.messages,
                segments: group.segments,
                delivered: group.delivered,
                failed: group.failed,
                cost,
                top_error_codes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(key: &str, delivered: u64, failed: u64) -> UsageGroup {
        UsageGroup {
            key: Some(key.into()),
            messages: 10,
            segments: 12,
            delivered,
            failed,
        }
    }

    fn code(key: &str, code: &str, count: u64) -> ErrorCodeCount {
        ErrorCodeCount {
            key: Some(key.into()),
            code: code.into(),
            count,
        }
    }

    #[test]
    fn the_delivery_rate_counts_only_messages_with_a_final_outcome() {
        let views = assemble(vec![group("GB", 3, 1), group("US", 0, 0)], vec![], &[]);
        assert_eq!(views[0].delivery_rate, Some(0.75));
        assert_eq!(views[1].delivery_rate, None);
    }

    #[test]
    fn each_group_lists_its_own_five_most_frequent_codes() {
        let mut codes: Vec<ErrorCodeCount> = (0..7)
            .map(|n| code("GB", &format!("3000{n}"), 10 - n))
            .collect();
        codes.push(code("US", "21211", 4));
        let views = assemble(vec![group("GB", 1, 1), group("US", 1, 1)], codes, &[]);
        let gb: Vec<&str> = views[0]
            .top_error_codes
            .iter()
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(gb, ["30000", "30001", "30002", "30003", "30004"]);
        assert_eq!(views[1].top_error_codes.len(), 1);
        assert_eq!(views[1].top_error_codes[0].count, 4);
    }

    #[test]
    fn each_group_shows_its_own_cost_per_currency() {
        let cost = |key: &str, currency: &str, units| CostSum {
            key: Some(key.into()),
            currency: currency.into(),
            total: domain::Amount::from_units(units),
        };
        let views = assemble(
            vec![group("GB", 1, 0), group("US", 1, 0)],
            vec![],
            &[cost("GB", "EUR", 3_330_000), cost("GB", "USD", 750_000)],
        );
        let gb: Vec<(&str, &str)> = views[0]
            .cost
            .iter()
            .map(|c| (c.currency.as_str(), c.amount.as_str()))
            .collect();
        assert_eq!(gb, [("EUR", "0.0333"), ("USD", "0.0075")]);
        assert!(views[1].cost.is_empty());
    }
}
