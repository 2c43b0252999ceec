//! `report`: the usage report of `GET /v1/reports/usage`, every API key's messages, as a table
//! or as the API's document.

use std::process::ExitCode;

use app::http::{usage_report, GroupBy, UsageReport};
use app::wiring::config::Sending;
use ports::UsageQuery;

use crate::args::ReportArgs;
use crate::environment;

pub async fn run(args: ReportArgs, json: bool) -> anyhow::Result<ExitCode> {
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let until = services.now();
    let query = UsageQuery {
        since: until - args.since,
        until,
        group_by: args.group_by.into(),
        api_key: None,
    };
    let report = usage_report(&services, &query).await?;
    if json {
        crate::print_json(&report)?;
    } else {
        print!("{}", layout(&table(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

/// A header and a row per group; the cost in each currency, `0.0333 EUR + 0.0075 USD`.
fn table(report: &UsageReport) -> Vec<Vec<String>> {
    let key = match report.group_by {
        GroupBy::Day => "day",
        GroupBy::Template => "template",
        GroupBy::Country => "country",
        GroupBy::Status => "status",
        GroupBy::ApiKey => "api_key",
    };
    let header = [
        key,
        "messages",
        "segments",
        "delivered",
        "failed",
        "delivery rate",
        "cost",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for group in &report.groups {
        let costs: Vec<String> = group
            .cost
            .iter()
            .map(|cost| format!("{} {}", cost.amount, cost.currency))
            .collect();
        rows.push(vec![
            group.key.clone().unwrap_or_else(|| "-".to_owned()),
            group.messages.to_string(),
            group.segments.to_string(),
            group.delivered.to_string(),
            group.failed.to_string(),
            // Of the messages whose fate is known; in flight ones say nothing yet.
            group
                .delivery_rate
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", 100.0 * rate)),
            if costs.is_empty() {
                "-".to_owned()
            } else {
                costs.join(" + ")
            },
        ]);
    }
    rows
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn layout(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(padded.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_their_widest_cell() {
        let rows = [
            vec!["status".into(), "messages".into()],
            vec!["delivered".into(), "12".into()],
            vec!["failed".into(), "1".into()],
        ];
        assert_eq!(
            layout(&rows),
            "status     messages\ndelivered  12\nfailed     1\n"
        );
    }
}
