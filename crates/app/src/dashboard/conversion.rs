//! Conversion by country, channel or provider: of the verifications started over a period,
//! how many got a code sent and were approved, how fast and at what cost, every API key's, as
//! `GET /v1/reports/conversion` answers an admin key. A table sorted by any column through
//! links (the server sorts: it works by keyboard, without script) and a bar chart of each
//! group's conversion drawn by `conversion.js` from the figures the chart element carries.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::TimeDelta;
use domain::Amount;
use ports::{ConversionGroup, ConversionGrouping, ConversionQuery};
use serde::Deserialize;

use super::assets;
use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::Services;

/// The groupings the page offers, by the value its form sends, with the column's heading.
const GROUPINGS: [(&str, ConversionGrouping, &str); 3] = [
    ("country", ConversionGrouping::Country, "Country"),
    ("channel", ConversionGrouping::Channel, "Channel"),
    ("provider", ConversionGrouping::Provider, "Provider"),
];

/// The periods, by the value the form sends, in hours.
const PERIODS: [(&str, &str, i64); 3] = [
    ("24h", "Last 24 hours", 24),
    ("7d", "Last 7 days", 24 * 7),
    ("30d", "Last 30 days", 24 * 30),
];

/// The columns, by the value a sort link sends, with their headings.
const COLUMNS: [(&str, &str); 8] = [
    ("key", ""),
    ("started", "Started"),
    ("sent", "Codes sent"),
    ("approved", "Approved"),
    ("rate", "Conversion"),
    ("approve", "Median time to approve"),
    ("cost", "Cost"),
    ("per_approval", "Cost per approval"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ConversionParams {
    #[serde(default)]
    by: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    dir: String,
}

/// One group's figures, as the API computes them.
struct Row {
    group: ConversionGroup,
    rate: Option<f64>,
    approve_p50: Option<u64>,
    per_approval: Vec<(String, Amount)>,
}

impl Row {
    fn of(group: ConversionGroup) -> Self {
        let rate = (group.started > 0).then(|| group.approved as f64 / group.started as f64);
        let per_approval = if group.approved == 0 {
            Vec::new()
        } else {
            group
                .costs
                .iter()
                .map(|(currency, total)| {
                    (
                        currency.clone(),
                        Amount::from_units(total.units() / i128::from(group.approved)),
                    )
                })
                .collect()
        };
        Self {
            approve_p50: group.to_approve.percentile(0.5),
            rate,
            per_approval,
            group,
        }
    }

    /// How the row compares with `other` in `column`; rows without a figure come last.
    fn compare(&self, other: &Row, column: &str) -> Ordering {
        fn units(costs: &[(String, Amount)]) -> Option<i128> {
            costs.first().map(|(_, amount)| amount.units())
        }
        match column {
            "started" => self.group.started.cmp(&other.group.started),
            "sent" => self.group.codes_sent.cmp(&other.group.codes_sent),
            "approved" => self.group.approved.cmp(&other.group.approved),
            "rate" => self
                .rate
                .partial_cmp(&other.rate)
                .unwrap_or(Ordering::Equal),
            "approve" => self.approve_p50.cmp(&other.approve_p50),
            "cost" => units(&self.group.costs).cmp(&units(&other.group.costs)),
            "per_approval" => units(&self.per_approval).cmp(&units(&other.per_approval)),
            _ => self.group.key.cmp(&other.group.key),
        }
    }
}

fn costs(costs: &[(String, Amount)]) -> String {
    if costs.is_empty() {
        return "—".to_owned();
    }
    let each: Vec<String> = costs
        .iter()
        .map(|(currency, amount)| format!("{amount} {currency}"))
        .collect();
    esc(&each.join(", "))
}

fn seconds(milliseconds: Option<u64>) -> String {
    milliseconds.map_or_else(
        || "—".to_owned(),
        |ms| format!("{:.1} s", ms as f64 / 1000.0),
    )
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |rate| format!("{:.1}%", rate * 100.0))
}

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(params): Query<ConversionParams>,
) -> Result<Html<String>, PageError> {
    let grouping = GROUPINGS
        .iter()
        .find(|(value, _, _)| *value == params.by)
        .unwrap_or(&GROUPINGS[0]);
    let period = PERIODS
        .iter()
        .find(|(value, _, _)| *value == params.period)
        .unwrap_or(&PERIODS[1]);
    let sort = COLUMNS
        .iter()
        .map(|(value, _)| *value)
        .find(|value| *value == params.sort)
        .unwrap_or("started");
    // Counts read best largest first, names in alphabetical order.
    let descending = match params.dir.as_str() {
        "asc" => false,
        "desc" => true,
        _ => sort != "key",
    };

    let until = services.now();
    let query = ConversionQuery {
        since: until - TimeDelta::hours(period.2),
        until,
        group_by: grouping.1,
        api_key: None,
    };
    let mut rows: Vec<Row> = services
        .conversion(&query)
        .await?
        .into_iter()
        .map(Row::of)
        .collect();
    rows.sort_by(|a, b| {
        let order = a.compare(b, sort);
        if descending {
            order.reverse()
        } else {
            order
        }
    });

    let mut body = String::new();
    body.push_str(r#"<form class="row" method="get" action="/dashboard/conversion" aria-label="Choose the groups and period">"#);
    body.push_str(
        r#"<div class="field"><label for="by">Group by</label><select id="by" name="by">"#,
    );
    for (value, _, label) in GROUPINGS {
        body.push_str(&option(value, label, value == grouping.0));
    }
    body.push_str(r#"</select></div><div class="field"><label for="period">Started</label><select id="period" name="period">"#);
    for (value, label, _) in PERIODS {
        body.push_str(&option(value, label, value == period.0));
    }
    body.push_str(r#"</select></div><button type="submit">Show</button></form>"#);

    let started: u64 = rows.iter().map(|row| row.group.started).sum();
    let approved: u64 = rows.iter().map(|row| row.group.approved).sum();
    let _ = write!(
        body,
        r#"<dl class="cards"><div class="card"><dt>Verifications started</dt><dd data-figure="started">{}</dd></div><div class="card"><dt>Approved</dt><dd data-figure="approved">{}</dd></div><div class="card"><dt>Conversion</dt><dd data-figure="rate">{}</dd></div></dl>"#,
        count(started),
        count(approved),
        percent((started > 0).then(|| approved as f64 / started as f64)),
    );

    if rows.is_empty() {
        body.push_str(r#"<p class="empty">No verification was started in this period.</p>"#);
    } else {
        let labels: Vec<String> = rows.iter().map(|row| label(&row.group)).collect();
        let rates: Vec<f64> = rows
            .iter()
            .map(|row| (row.rate.unwrap_or(0.0) * 1000.0).round() / 10.0)
            .collect();
        let _ = write!(
            body,
            r#"<h2 id="chart-heading">Conversion by {heading}</h2><div id="chart-conversion" class="chart" role="img" aria-labelledby="chart-heading" aria-describedby="conversion-table" data-labels="{labels}" data-rates="{rates}"></div>"#,
            heading = esc(&grouping.2.to_lowercase()),
            labels = esc(&serde_json::to_string(&labels).unwrap_or_default()),
            rates = esc(&serde_json::to_string(&rates).unwrap_or_default()),
        );
        body.push_str(&table(&rows, grouping, period.0, sort, descending));
    }
    Ok(Html(html::page(
        "Conversion",
        Some(Nav::Conversion),
        Some(&operator.header()),
        &[
            &assets::url("uPlot.iife.min.js"),
            &assets::url("conversion.js"),
        ],
        &body,
    )))
}

/// A group's name as the table shows it: verifications without one had no code accepted.
fn label(group: &ConversionGroup) -> String {
    group
        .key
        .clone()
        .unwrap_or_else(|| "none accepted".to_owned())
}

fn option(value: &str, label: &str, selected: bool) -> String {
    let selected = if selected { " selected" } else { "" };
    format!(
        r#"<option value="{}"{selected}>{}</option>"#,
        esc(value),
        esc(label)
    )
}

/// The table, each heading a link that sorts by its column (the other way round when it
/// already does), `aria-sort` saying which one does.
fn table(
    rows: &[Row],
    grouping: &(&str, ConversionGrouping, &'static str),
    period: &str,
    sort: &str,
    descending: bool,
) -> String {
    let caption = format!(
        "Verifications by {}, sorted by {} ({})",
        grouping.2.to_lowercase(),
        heading(grouping, sort).to_lowercase(),
        if descending {
            "descending"
        } else {
            "ascending"
        }
    );
    let mut out = format!(
        r#"<div class="scroll" tabindex="0" role="region" aria-label="{0}"><table id="conversion-table"><caption>{0}</caption><thead><tr>"#,
        esc(&caption)
    );
    for (column, _) in COLUMNS {
        let current = column == sort;
        let (aria, next) = match (current, descending) {
            (true, true) => (r#" aria-sort="descending""#, "asc"),
            (true, false) => (r#" aria-sort="ascending""#, "desc"),
            (false, _) => ("", if column == "key" { "asc" } else { "desc" }),
        };
        let arrow = match (current, descending) {
            (true, true) => r#" <span aria-hidden="true">▼</span>"#,
            (true, false) => r#" <span aria-hidden="true">▲</span>"#,
            (false, _) => "",
        };
        let class = if column == "key" {
            ""
        } else {
            r#" class="num""#
        };
        let _ = write!(
            out,
            r#"<th scope="col"{class}{aria}><a href="/dashboard/conversion?by={by}&amp;period={period}&amp;sort={column}&amp;dir={next}" data-sort="{column}">{name}</a>{arrow}</th>"#,
            by = grouping.0,
            name = esc(heading(grouping, column)),
        );
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        let group = &row.group;
        let _ = write!(
            out,
            r#"<tr><th scope="row">{}</th><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&label(group)),
            count(group.started),
            count(group.codes_sent),
            count(group.approved),
            percent(row.rate),
            seconds(row.approve_p50),
            costs(&group.costs),
            costs(&row.per_approval),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn heading(grouping: &(&str, ConversionGrouping, &'static str), column: &str) -> &'static str {
    COLUMNS
        .iter()
        .find(|(value, _)| *value == column)
        .map_or(
            grouping.2,
            |(_, name)| {
                if name.is_empty() {
                    grouping.2
                } else {
                    name
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use domain::latency::LatencyHistogram;

    use super::*;

    fn group(key: &str, started: u64, approved: u64) -> Row {
        Row::of(ConversionGroup {
            key: Some(key.into()),
            started,
            codes_sent: started,
            approved,
            to_approve: LatencyHistogram::default(),
            to_deliver: LatencyHistogram::default(),
            costs: vec![("EUR".into(), Amount::from_units(3_950_000))],
        })
    }

    #[test]
    fn rows_sort_by_the_chosen_column_and_the_figures_are_the_apis() {
        let rows = [group("GB", 4, 3), group("US", 10, 2), group("FR", 0, 0)];
        let mut by_rate: Vec<&Row> = rows.iter().collect();
        by_rate.sort_by(|a, b| a.compare(b, "rate").reverse());
        let keys: Vec<_> = by_rate
            .iter()
            .map(|row| row.group.key.as_deref().unwrap())
            .collect();
        // No verification, no rate: last.
        assert_eq!(keys, ["GB", "US", "FR"]);
        assert_eq!(percent(rows[0].rate), "75.0%");
        assert_eq!(rows[0].per_approval[0].1.to_string(), "0.01316666");
        assert!(rows[2].per_approval.is_empty());
    }

    #[test]
    fn the_sorted_column_says_so_and_its_link_reverses_it() {
        let rows = [group("GB", 4, 3)];
        let html = table(&rows, &GROUPINGS[0], "7d", "approved", true);
        assert!(
            html.contains(r#"aria-sort="descending"><a href="/dashboard/conversion?by=country&amp;period=7d&amp;sort=approved&amp;dir=asc""#),
            "{html}"
        );
        assert_eq!(html.matches("aria-sort").count(), 1);
    }
}
