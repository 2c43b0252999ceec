//! The overview: the last day and week of sends, deliveries and failures, hour by hour and day
//! by day, and of verifications (codes sent, approved, the conversion rate) hour by hour
//! (charts drawn by the page's script from `/dashboard/overview.json`, which it reads again
//! every 30 seconds), the queue, readiness, the fraud guard's blocks and decisions, and today's
//! spend against budget.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;
use axum::Json;
use serde::Serialize;

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::{assets, PageError};
use crate::usecases::overview::{Bucket, Overview};
use crate::Services;

/// The figures shown as cards, by the name their element carries (`data-figure`), formatted
/// for people: the page and its refresh show the same text.
fn figures(overview: &Overview) -> Vec<(&'static str, &'static str, String)> {
    let decided = |action| {
        overview
            .decisions
            .iter()
            .find(|(each, _)| *each == action)
            .map_or(0, |(_, count)| *count)
    };
    let capped = if overview.decisions_capped { "+" } else { "" };
    let oldest = overview.queue.oldest_queued_at.map_or_else(
        || "none queued".to_owned(),
        |at| html::relative(at, overview.now),
    );
    vec![
        (
            "messages",
            "Sent, last 24 h",
            count(overview.last_day.messages),
        ),
        (
            "delivered",
            "Delivered, last 24 h",
            count(overview.last_day.delivered),
        ),
        (
            "failed",
            "Failed, last 24 h",
            count(overview.last_day.failed),
        ),
        (
            "segments",
            "Segments, last 24 h",
            count(overview.last_day.segments),
        ),
        ("queue_depth", "Queue depth", count(overview.queue.depth)),
        ("queue_oldest", "Oldest queued", oldest),
        (
            "blocks",
            "Fraud blocks in force",
            count(overview.blocks as u64),
        ),
        (
            "fraud_blocked",
            "Codes blocked, last 24 h",
            format!("{}{capped}", count(decided(domain::fraud::Action::Block))),
        ),
        (
            "fraud_monitored",
            "Would have blocked (monitor)",
            format!("{}{capped}", count(decided(domain::fraud::Action::Monitor))),
        ),
    ]
}

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
) -> Result<Html<String>, PageError> {
    let overview = services.overview().await?;
    let mut body = String::from(r#"<h2 id="figures-heading">Last 24 hours</h2><dl class="cards">"#);
    for (name, label, value) in figures(&overview) {
        let _ = write!(
            body,
            r#"<div class="card"><dt>{}</dt><dd data-figure="{name}">{}</dd></div>"#,
            esc(label),
            esc(&value)
        );
    }
    body.push_str("</dl>");
    body.push_str(
        r#"<p class="hint" aria-live="polite">Refreshes every 30 seconds; last: <span id="refreshed">on load</span>.</p>
<h2 id="hourly-heading">Per hour, last 24 hours</h2>
<div id="chart-hourly" class="chart" role="img" aria-labelledby="hourly-heading"></div>"#,
    );
    body.push_str(&series_table(
        "Per hour, last 24 hours",
        &overview.hourly,
        "%H:00",
    ));
    body.push_str(
        r#"<h2 id="daily-heading">Per day, last 7 days</h2>
<div id="chart-daily" class="chart" role="img" aria-labelledby="daily-heading"></div>"#,
    );
    body.push_str(&series_table(
        "Per day, last 7 days",
        &overview.daily,
        "%a %d %b",
    ));
    body.push_str(
        r#"<h2 id="weekly-hourly-heading">Per hour, last 7 days</h2>
<div id="chart-weekly-hourly" class="chart" role="img" aria-labelledby="weekly-hourly-heading"></div>"#,
    );
    body.push_str(&series_table(
        "Per hour, last 7 days",
        &overview.weekly_hourly,
        "%a %H:00",
    ));
    body.push_str(
        r#"<h2 id="conversion-heading">Verifications per hour, last 7 days</h2>
<div id="chart-conversion" class="chart" role="img" aria-labelledby="conversion-heading"></div>"#,
    );
    body.push_str(&conversion_table(
        "Verifications per hour, last 7 days",
        &overview.weekly_hourly,
    ));

    body.push_str("<h2>Spend today</h2>");
    let spend: Vec<Vec<String>> = overview
        .spend
        .iter()
        .map(|spend| {
            vec![
                esc(&spend.currency),
                format!(
                    r#"<span class="num">{}</span>"#,
                    esc(&spend.spent.to_string())
                ),
                spend
                    .budget
                    .map_or_else(|| "no budget".to_owned(), |budget| esc(&budget.to_string())),
                spend.budget.map_or_else(String::new, |budget| {
                    let ratio = domain::budget::spend_ratio(budget, spend.spent);
                    let class = if ratio >= 0.8 { "warn" } else { "good" };
                    format!(r#"<span class="{class}">{:.0} %</span>"#, ratio * 100.0)
                }),
            ]
        })
        .collect();
    body.push_str(&html::table(
        "What providers charged since midnight UTC",
        &["Currency", "Spent", "Daily budget", "Used"],
        &spend,
        "Nothing charged today, and no daily budget set.",
    ));

    body.push_str("<h2>Readiness and providers</h2>");
    let checks: Vec<Vec<String>> = services
        .readiness()
        .check()
        .await
        .into_iter()
        .map(|check| {
            vec![
                esc(check.name),
                match &check.problem {
                    None => r#"<span class="good">ok</span>"#.to_owned(),
                    Some(problem) => format!(r#"<span class="bad">{}</span>"#, esc(problem)),
                },
            ]
        })
        .collect();
    body.push_str(&html::table(
        "Readiness checks",
        &["Check", "State"],
        &checks,
        "No check.",
    ));
    let providers = services.readiness().provider_names().join(", ");
    let _ = write!(
        body,
        "<p>Providers, in failover order: <strong>{}</strong>.</p>",
        esc(&providers)
    );
    body.push_str(&super::providers::circuits_table(
        &services.provider_circuits(),
        overview.now,
    ));
    Ok(Html(html::page(
        "Overview",
        Some(Nav::Overview),
        Some(&operator.header()),
        &[
            &assets::url("uPlot.iife.min.js"),
            &assets::url("overview.js"),
        ],
        &body,
    )))
}

/// The series as a table too: the chart's figures for whoever cannot see it.
fn series_table(caption: &str, buckets: &[Bucket], label: &str) -> String {
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .rev()
        .map(|bucket| {
            vec![
                html::time_shown_as(bucket.start, &bucket.start.format(label).to_string()),
                count(bucket.totals.messages),
                count(bucket.totals.delivered),
                count(bucket.totals.failed),
            ]
        })
        .collect();
    format!(
        "<details><summary>{} as a table</summary>{}</details>",
        esc(caption),
        html::table(
            caption,
            &["From", "Sent", "Delivered", "Failed"],
            &rows,
            "None."
        )
    )
}

/// The conversion series as a table: the hours with verifications, newest first.
fn conversion_table(caption: &str, buckets: &[Bucket]) -> String {
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .rev()
        .filter(|bucket| bucket.funnel.started > 0)
        .map(|bucket| {
            vec![
                html::time_shown_as(bucket.start, &bucket.start.format("%a %H:00").to_string()),
                count(bucket.funnel.started),
                count(bucket.funnel.codes_sent),
                count(bucket.funnel.approved),
                bucket
                    .funnel
                    .rate()
                    .map_or_else(String::new, |rate| format!("{:.1} %", rate * 100.0)),
            ]
        })
        .collect();
    format!(
        "<details><summary>{} as a table</summary>{}</details>",
        esc(caption),
        html::table(
            caption,
            &["From", "Started", "Codes sent", "Approved", "Conversion"],
            &rows,
            "No verification started."
        )
    )
}

#[derive(Serialize)]
pub struct Point {
    /// Seconds since the epoch, as the chart takes them.
    start: i64,
    messages: u64,
    delivered: u64,
    failed: u64,
    started: u64,
    codes_sent: u64,
    approved: u64,
    /// Approved per verification started, in percent; `null` without verifications.
    conversion: Option<f64>,
}

#[derive(Serialize)]
pub struct Figures {
    figures: std::collections::BTreeMap<&'static str, String>,
    hourly: Vec<Point>,
    weekly_hourly: Vec<Point>,
    daily: Vec<Point>,
}

fn points(buckets: &[Bucket]) -> Vec<Point> {
    buckets
        .iter()
        .map(|bucket| Point {
            start: bucket.start.timestamp(),
            messages: bucket.totals.messages,
            delivered: bucket.totals.delivered,
            failed: bucket.totals.failed,
            started: bucket.funnel.started,
            codes_sent: bucket.funnel.codes_sent,
            approved: bucket.funnel.approved,
            conversion: bucket.funnel.rate().map(|rate| rate * 100.0),
        })
        .collect()
}

/// What the page's script redraws it from.
pub async fn figures_json(
    State(services): State<Arc<Services>>,
    _operator: Operator,
) -> Result<Json<Figures>, PageError> {
    let overview = services.overview().await?;
    Ok(Json(Figures {
        figures: figures(&overview)
            .into_iter()
            .map(|(name, _, value)| (name, value))
            .collect(),
        hourly: points(&overview.hourly),
        weekly_hourly: points(&overview.weekly_hourly),
        daily: points(&overview.daily),
    }))
}
