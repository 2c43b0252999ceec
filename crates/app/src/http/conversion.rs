//! The conversion report for operators and clients: of the verifications started over a time
//! range, in groups, how many got a code sent and how many were approved, how fast, and at
//! what cost. Every figure is aggregated by the store.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::Amount;
use ports::{ConversionGroup, ConversionGrouping, ConversionQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiClient, ApiQuery, QueryTime};
use super::reports::{report_range, CostView};
use super::ApiError;
use crate::Services;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversionGroupBy {
    /// The UTC day the verification started, `YYYY-MM-DD`.
    Day,
    /// The number's ISO 3166 country code.
    Country,
    /// `sms`, `whatsapp` or `voice`: the channel the verification was started on.
    Channel,
    /// The provider that accepted the verification's first code (`twilio`, `vonage`); null
    /// when none was accepted.
    Provider,
    /// The number without its last five digits, as the fraud guard's prefixes (`+4477009`).
    Prefix,
    ApiKey,
}

impl From<ConversionGroupBy> for ConversionGrouping {
    fn from(group_by: ConversionGroupBy) -> Self {
        match group_by {
            ConversionGroupBy::Day => ConversionGrouping::Day,
            ConversionGroupBy::Country => ConversionGrouping::Country,
            ConversionGroupBy::Channel => ConversionGrouping::Channel,
            ConversionGroupBy::Provider => ConversionGrouping::Provider,
            ConversionGroupBy::Prefix => ConversionGrouping::Prefix,
            ConversionGroupBy::ApiKey => ConversionGrouping::ApiKey,
        }
    }
}

impl From<ConversionGrouping> for ConversionGroupBy {
    fn from(grouping: ConversionGrouping) -> Self {
        match grouping {
            ConversionGrouping::Day => ConversionGroupBy::Day,
            ConversionGrouping::Country => ConversionGroupBy::Country,
            ConversionGrouping::Channel => ConversionGroupBy::Channel,
            ConversionGrouping::Provider => ConversionGroupBy::Provider,
            ConversionGrouping::Prefix => ConversionGroupBy::Prefix,
            ConversionGrouping::ApiKey => ConversionGroupBy::ApiKey,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversionParams {
    /// Verifications started at or after (RFC 3339, or a period before now: `30m`, `24h`,
    /// `7d`); default `until` minus 30 days.
    #[param(value_type = Option<String>)]
    since: Option<QueryTime>,
    /// Verifications started before (RFC 3339, or a period before now); default now.
    #[param(value_type = Option<String>)]
    until: Option<QueryTime>,
    /// Default `day`.
    group_by: Option<ConversionGroupBy>,
}

/// A latency's percentiles in milliseconds, each estimated from fixed buckets (accurate to
/// its bucket: 50 ms near zero, a few seconds around half a minute); null without any.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyView {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    /// How many latencies were measured.
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversionGroupView {
    /// The group's value (`2026-01-31`, `GB`, `sms`, `twilio`, `+4477009`, `auth`); null for
    /// verifications without one (no code accepted has no provider).
    pub key: Option<String>,
    pub verifications_started: u64,
    /// Code messages a provider accepted: sent, delivered or undelivered.
    pub codes_sent: u64,
    pub approved: u64,
    /// `approved / verifications_started`; null without verifications.
    pub conversion_rate: Option<f64>,
    /// From a verification's start to its approval, for the approved ones.
    pub time_to_approve_ms: LatencyView,
    /// From a code's sending to its delivery receipt, for the delivered codes.
    pub time_to_deliver_ms: LatencyView,
    /// What the code messages cost, per currency.
    pub cost: Vec<CostView>,
    /// `cost / approved` per currency, rounded down to the amount's eight decimals; empty
    /// while none was approved.
    pub cost_per_approved: Vec<CostView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversionReport {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub group_by: ConversionGroupBy,
    pub groups: Vec<ConversionGroupView>,
}

/// The verification funnel over a time range, grouped by day, country, channel, provider,
/// prefix or API key name: of the caller's own verifications, or every API key's for an admin
/// key (`ADMIN_API_KEYS`).
#[utoipa::path(
    get,
    path = "/v1/reports/conversion",
    tag = "reports",
    security(("api_key" = [])),
    params(ConversionParams),
    responses(
        (status = 200, description = "The report", body = ConversionReport),
        (status = "default", description = "An error, naming the parameter when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn conversion(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    ApiQuery(params): ApiQuery<ConversionParams>,
) -> Result<Json<ConversionReport>, ApiError> {
    let (since, until) = report_range(services.now(), params.since, params.until)?;
    let query = ConversionQuery {
        since,
        until,
        group_by: params.group_by.unwrap_or(ConversionGroupBy::Day).into(),
        api_key: (!client.is_admin).then_some(client.name),
    };
    Ok(Json(conversion_report(&services, &query).await?))
}

/// The report `query` asks for (`GET /v1/reports/conversion`).
pub async fn conversion_report(
    services: &Services,
    query: &ConversionQuery,
) -> Result<ConversionReport, ports::StoreError> {
    let groups = services.conversion(query).await?;
    Ok(ConversionReport {
        since: query.since,
        until: query.until,
        group_by: query.group_by.into(),
        groups: groups.into_iter().map(view).collect(),
    })
}

fn view(group: ConversionGroup) -> ConversionGroupView {
    let latency = |histogram: &domain::latency::LatencyHistogram| LatencyView {
        p50: histogram.percentile(0.5),
        p95: histogram.percentile(0.95),
        count: histogram.total(),
    };
    let cost_per_approved = if group.approved == 0 {
        Vec::new()
    } else {
        group
            .costs
            .iter()
            .map(|(currency, total)| CostView {
                currency: currency.clone(),
                amount: Amount::from_units(total.units() / i128::from(group.approved)).to_string(),
            })
            .collect()
    };
    ConversionGroupView {
        conversion_rate: (group.started > 0).then(|| group.approved as f64 / group.started as f64),
        time_to_approve_ms: latency(&group.to_approve),
        time_to_deliver_ms: latency(&group.to_deliver),
        cost: group
            .costs
            .iter()
            .map(|(currency, total)| CostView {
                currency: currency.clone(),
                amount: total.to_string(),
            })
            .collect(),
        cost_per_approved,
        key: group.key,
        verifications_started: group.started,
        codes_sent: group.codes_sent,
        approved: group.approved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::latency::LatencyHistogram;

    #[test]
    fn the_cost_per_approved_verification_divides_each_currencys_cost() {
        let mut to_approve = LatencyHistogram::default();
        to_approve.record(12_000);
        let view = view(ConversionGroup {
            key: Some("GB".into()),
            started: 4,
            codes_sent: 5,
            approved: 3,
            to_approve,
            to_deliver: LatencyHistogram::default(),
            costs: vec![("EUR".into(), Amount::from_units(3_950_000))],
        });
        assert_eq!(view.conversion_rate, Some(0.75));
        assert_eq!(view.cost[0].amount, "0.0395");
        assert_eq!(view.cost_per_approved[0].amount, "0.01316666");
        assert_eq!(view.time_to_approve_ms.count, 1);
        assert_eq!(view.time_to_deliver_ms.p50, None);
    }

    #[test]
    fn a_group_without_approvals_has_no_cost_per_approval() {
        let view = view(ConversionGroup {
            key: None,
            started: 2,
            codes_sent: 0,
            approved: 0,
            to_approve: LatencyHistogram::default(),
            to_deliver: LatencyHistogram::default(),
            costs: vec![("USD".into(), Amount::from_units(790_000))],
        });
        assert_eq!(view.conversion_rate, Some(0.0));
        assert!(view.cost_per_approved.is_empty());
    }
}
