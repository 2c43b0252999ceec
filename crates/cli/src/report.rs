//! `report`: the usage report of `GET /v1/reports/usage` and (`report conversion`) the
//! conversion report of `GET /v1/reports/conversion`, every API key's, as a table or as the
//! API's document; `report fold` brings the reports' rollups up to date.

use std::process::ExitCode;

use app::http::{
    conversion_report, usage_report, ConversionGroupBy, ConversionReport, GroupBy, LatencyView,
    UsageReport,
};
use app::wiring::config::Sending;
use ports::{ConversionQuery, UsageQuery};
use serde::Serialize;

use crate::args::{ConversionArgs, FoldArgs, ReportArgs, ReportCommand};
use crate::environment;

pub async fn run(args: ReportArgs, json: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(ReportCommand::Conversion(conversion)) => {
            return run_conversion(conversion, json).await
        }
        Some(ReportCommand::Fold(fold)) => return run_fold(fold, json).await,
        None => {}
    }
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

async fn run_conversion(args: ConversionArgs, json: bool) -> anyhow::Result<ExitCode> {
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let until = services.now();
    let query = ConversionQuery {
        since: until - args.since,
        until,
        group_by: args.group_by.into(),
        api_key: None,
    };
    let report = conversion_report(&services, &query).await?;
    if json {
        crate::print_json(&report)?;
    } else {
        print!("{}", layout(&conversion_table(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

/// A header and a row per group, latencies as `p50/p95` in seconds.
fn conversion_table(report: &ConversionReport) -> Vec<Vec<String>> {
    let key = match report.group_by {
        ConversionGroupBy::Day => "day",
        ConversionGroupBy::Country => "country",
        ConversionGroupBy::Channel => "channel",
        ConversionGroupBy::Provider => "provider",
        ConversionGroupBy::Prefix => "prefix",
        ConversionGroupBy::ApiKey => "api_key",
    };
    let header = [
        key,
        "started",
        "codes sent",
        "approved",
        "conversion",
        "to approve p50/p95",
        "to deliver p50/p95",
        "cost per approved",
    ];
    let seconds = |millis: Option<u64>| {
        millis.map_or_else(
            || "-".to_owned(),
            |millis| format!("{:.1}s", millis as f64 / 1000.0),
        )
    };
    let latency = |view: &LatencyView| format!("{}/{}", seconds(view.p50), seconds(view.p95));
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for group in &report.groups {
        let costs: Vec<String> = group
            .cost_per_approved
            .iter()
            .map(|cost| format!("{} {}", cost.amount, cost.currency))
            .collect();
        rows.push(vec![
            group.key.clone().unwrap_or_else(|| "-".to_owned()),
            group.verifications_started.to_string(),
            group.codes_sent.to_string(),
            group.approved.to_string(),
            group
                .conversion_rate
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.1}%", 100.0 * rate)),
            latency(&group.time_to_approve_ms),
            latency(&group.time_to_deliver_ms),
            if costs.is_empty() {
                "-".to_owned()
            } else {
                costs.join(" + ")
            },
        ]);
    }
    rows
}

/// What `report fold --json` prints.
#[derive(Serialize)]
struct Folded {
    /// Every hour before it is in the rollups (RFC 3339); null while nothing was folded.
    watermark: Option<chrono::DateTime<chrono::Utc>>,
    /// Hours folded by this call.
    hours_folded: u64,
}

async fn run_fold(args: FoldArgs, json: bool) -> anyhow::Result<ExitCode> {
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let step = services.fold_rollups(args.settle).await?;
    let folded = Folded {
        watermark: step.watermark,
        hours_folded: step.hours,
    };
    if json {
        crate::print_json(&folded)?;
    } else {
        match folded.watermark {
            Some(watermark) => println!(
                "{} hours folded; every hour before {} is in the rollups",
                folded.hours_folded,
                watermark.to_rfc3339()
            ),
            None => println!("nothing to fold yet"),
        }
    }
    Ok(ExitCode::SUCCESS)
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
