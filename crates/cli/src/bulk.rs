//! `send --csv`: many messages from a CSV file. Every row is checked before any is sent; each
//! row's idempotency key comes from the template and the row's content, so a second run of the
//! same file sends nothing twice and an edited row is a new message.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use app::config::Sending;
use app::messaging::{Content, SendRequest};
use app::Services;
use domain::{Channel, Message, MessageId, MessageStatus, PhoneNumber};
use indicatif::{ProgressBar, ProgressStyle};
use ports::Enqueued;
use sha2::{Digest, Sha256};

use crate::args::SendArgs;
use crate::environment;
use crate::follow;

/// One checked row, ready to enqueue.
struct Row {
    line: u64,
    to: PhoneNumber,
    data: BTreeMap<String, String>,
}

pub async fn run(api_key: &str, args: SendArgs) -> anyhow::Result<ExitCode> {
    let (Some(path), Some(template)) = (args.csv, args.template) else {
        anyhow::bail!("--csv needs --template");
    };
    let assembled = environment::assemble(Sending::Required).await?;
    let services = assembled.services;

    let rows = match read_rows(&services, &path, &template)? {
        Ok(rows) => rows,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}: {problem}", path.display());
            }
            eprintln!(
                "nothing was sent: {} bad rows; fix them and run again",
                problems.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };

    let (ids, earlier) = enqueue(&services, api_key, &template, args.channel, &rows).await?;
    println!(
        "{} rows: {} messages queued now, {} already queued or sent by an earlier run",
        rows.len(),
        rows.len() - earlier,
        earlier
    );

    let progress = bar(ids.len() as u64, "delivery statuses");
    let patience = Duration::from_secs(args.timeout);
    let messages = follow::with_dispatcher(
        assembled.dispatcher,
        follow::follow_all(&services, &ids, patience, |_| progress.inc(1)),
    )
    .await?;
    progress.finish_and_clear();
    Ok(summarise(&services, &rows, &ids, &messages, args.timeout))
}

/// The rows of the file, or every problem found in it with its line number.
fn read_rows(
    services: &Services,
    path: &Path,
    template: &str,
) -> anyhow::Result<Result<Vec<Row>, Vec<String>>> {
    anyhow::ensure!(
        services.templates.contains(template),
        "unknown template `{template}`"
    );
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the first line of {}", path.display()))?
        .clone();
    let Some(to_column) = headers.iter().position(|name| name == "to") else {
        anyhow::bail!(
            "{}: the first line must name the columns, one of them `to`",
            path.display()
        );
    };
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                problems.push(format!("line {line}: {error}"));
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        // An empty cell is a missing variable, so that rendering names it.
        let data: BTreeMap<String, String> = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(column, (_, value))| *column != to_column && !value.is_empty())
            .map(|(_, (name, value))| (name.to_owned(), value.to_owned()))
            .collect();
        let to = match PhoneNumber::parse(record.get(to_column).unwrap_or_default()) {
            Ok(to) => to,
            Err(error) => {
                problems.push(format!("line {line}: to: {error}"));
                continue;
            }
        };
        let content = Content::Template {
            name: template.to_owned(),
            data: json_object(&data),
        };
        if let Err(error) = services.message_text(content) {
            problems.push(format!("line {line}: {error}"));
            continue;
        }
        rows.push(Row { line, to, data });
    }
    Ok(if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    })
}

/// Enqueues every row; returns the messages' ids, in row order, and how many were already
/// stored by an earlier run.
async fn enqueue(
    services: &Services,
    api_key: &str,
    template: &str,
    channel: Channel,
    rows: &[Row],
) -> anyhow::Result<(Vec<MessageId>, usize)> {
    let progress = bar(rows.len() as u64, "queued");
    let mut ids = Vec::with_capacity(rows.len());
    let mut earlier = 0;
    for row in rows {
        let enqueued = services
            .send_message(
                api_key,
                SendRequest {
                    to: row.to.clone(),
                    channel,
                    content: Content::Template {
                        name: template.to_owned(),
                        data: json_object(&row.data),
                    },
                    idempotency_key: Some(row_key(template, &row.to, &row.data)),
                },
            )
            .await
            .with_context(|| format!("line {}: cannot queue the message", row.line))?;
        if matches!(enqueued, Enqueued::Existing(_)) {
            earlier += 1;
        }
        ids.push(enqueued.message().id);
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok((ids, earlier))
}

/// The idempotency key of a row: the same template, number and variables give the same key.
/// Each field is length-prefixed, so that no two different rows hash the same text.
fn row_key(template: &str, to: &PhoneNumber, data: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    let fields = [template, to.as_str()].into_iter().chain(
        data.iter()
            .flat_map(|(name, value)| [name.as_str(), value.as_str()]),
    );
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    format!("csv-{:x}", hasher.finalize())
}

fn json_object(data: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        data.iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect(),
    )
}

/// Counts by status, then each row that failed or is still on its way, with its line.
fn summarise(
    services: &Services,
    rows: &[Row],
    ids: &[MessageId],
    messages: &[Message],
    timeout: u64,
) -> ExitCode {
    let by_id: HashMap<MessageId, &Message> = messages
        .iter()
        .map(|message| (message.id, message))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for message in messages {
        *counts.entry(message.status.as_str()).or_default() += 1;
    }
    let counted: Vec<String> = counts
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    println!("{}", counted.join(", "));
    let (mut lost_any, mut unsettled_any) = (false, false);
    for (row, id) in rows.iter().zip(ids) {
        let Some(message) = by_id.get(id) else {
            continue;
        };
        let lost = matches!(
            message.status,
            MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired
        );
        let unsettled = !follow::is_settled(services, message.status);
        if lost || unsettled {
            println!(
                "line {}: {} {}",
                row.line,
                message.to.masked(),
                follow::describe(message)
            );
        }
        lost_any |= lost;
        unsettled_any |= unsettled;
    }
    if unsettled_any {
        println!(
            "some messages were still on their way after {timeout} s: a running service, or the next run of this file, goes on with them"
        );
    }
    if lost_any {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A progress bar on stderr; hidden when stderr is not a terminal (scripts, tests).
fn bar(length: u64, what: &'static str) -> ProgressBar {
    let progress = ProgressBar::new(length).with_message(what);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({elapsed})") {
        progress.set_style(style);
    }
    progress
}
