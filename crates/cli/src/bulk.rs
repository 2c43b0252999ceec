//! `send --csv`: many messages from a CSV file. Every row is checked before any is sent; each
//! row's idempotency key comes from the template and the row's content, so a second run of the
//! same file sends nothing twice and an edited row is a new message.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use app::usecases::messaging::{Content, SendRequest};
use app::wiring::config::Sending;
use app::Services;
use domain::{Channel, Message, MessageId, MessageStatus, PhoneNumber};
use indicatif::{ProgressBar, ProgressStyle};
use ports::Enqueued;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::args::SendArgs;
use crate::environment;
use crate::failure::{Class, Failure};
use crate::follow;
use crate::send::{list, variables_of};

/// One checked row, ready to enqueue.
struct Row {
    line: u64,
    to: PhoneNumber,
    data: BTreeMap<String, String>,
}

pub async fn run(api_key: &str, args: SendArgs, json: bool) -> anyhow::Result<ExitCode> {
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
            return Err(Failure::usage(format!(
                "nothing was sent: {}; fix them and run again",
                count(problems.len(), "bad row", "bad rows")
            )));
        }
    };

    let (ids, earlier) = enqueue(&services, api_key, &template, args.channel, &rows).await?;
    if !json {
        println!(
            "{}: {} now, {} by an earlier run",
            count(rows.len(), "row", "rows"),
            count(rows.len() - earlier, "message queued", "messages queued"),
            count(earlier, "already queued or sent", "already queued or sent"),
        );
    }

    let progress = bar(ids.len() as u64, "delivery statuses");
    let patience = Duration::from_secs(args.timeout);
    let messages = follow::with_dispatcher(
        assembled.dispatcher,
        follow::follow_all(&services, &ids, patience, |_| progress.inc(1)),
    )
    .await?;
    progress.finish_and_clear();
    let summary = summarise(&services, &rows, &ids, &messages, earlier);
    if json {
        crate::print_json(&summary)?;
    } else {
        print_summary(&summary, args.timeout);
    }
    Ok(if summary.lost {
        Class::Negative.into()
    } else {
        ExitCode::SUCCESS
    })
}

/// `1 row`, `2 rows`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The rows of the file, or every problem found in it with its line number. A file whose
/// columns are wrong, or with no rows, is refused whole.
fn read_rows(
    services: &Services,
    path: &Path,
    template: &str,
) -> anyhow::Result<Result<Vec<Row>, Vec<String>>> {
    let Some(variables) = variables_of(services.templates(), template) else {
        return Err(Failure::usage(format!("unknown template `{template}`")));
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        // A row of the wrong width is reported below, against the first line's count.
        .flexible(true)
        .from_path(path)
        .map_err(|error| Failure::usage(format!("cannot read {}: {error}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|error| {
            Failure::usage(format!(
                "cannot read the first line of {}: {error}",
                path.display()
            ))
        })?
        .clone();
    let Some(to_column) = headers.iter().position(|name| name == "to") else {
        return Err(Failure::usage(format!(
            "{}: the first line must name the columns, one of them `to`",
            path.display()
        )));
    };
    let unknown: Vec<&str> = headers
        .iter()
        .filter(|name| *name != "to" && !variables.iter().any(|variable| variable == name))
        .collect();
    if !unknown.is_empty() {
        return Err(Failure::usage(format!(
            "{}: {} `{}`: template `{template}` has no such variable; the columns are `to` and its variables: {}",
            path.display(),
            if unknown.len() == 1 { "column" } else { "columns" },
            unknown.join("`, `"),
            list(&variables)
        )));
    }
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
        if record.len() != headers.len() {
            problems.push(format!(
                "line {line}: {}, but the first line names {}",
                count(record.len(), "value", "values"),
                count(headers.len(), "column", "columns")
            ));
            continue;
        }
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
    if problems.is_empty() && rows.is_empty() {
        return Err(Failure::usage(format!(
            "{}: no rows to send after the first line",
            path.display()
        )));
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

/// What became of a file's rows: `send --csv --json` prints it.
#[derive(Serialize)]
struct Summary {
    rows: usize,
    /// Rows queued by an earlier run of the same file, not queued again.
    earlier: usize,
    /// How many messages are in each status.
    statuses: BTreeMap<&'static str, usize>,
    /// Each row that failed or is still on its way.
    unfinished: Vec<Unfinished>,
    #[serde(skip)]
    lost: bool,
    #[serde(skip)]
    unsettled: bool,
}

#[derive(Serialize)]
struct Unfinished {
    line: u64,
    id: MessageId,
    to: String,
    status: MessageStatus,
    #[serde(skip)]
    described: String,
}

/// Counts by status, then each row that failed or is still on its way, with its line.
fn summarise(
    services: &Services,
    rows: &[Row],
    ids: &[MessageId],
    messages: &[Message],
    earlier: usize,
) -> Summary {
    let by_id: HashMap<MessageId, &Message> = messages
        .iter()
        .map(|message| (message.id, message))
        .collect();
    let mut statuses: BTreeMap<&'static str, usize> = BTreeMap::new();
    for message in messages {
        *statuses.entry(message.status.as_str()).or_default() += 1;
    }
    let mut unfinished = Vec::new();
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
            unfinished.push(Unfinished {
                line: row.line,
                id: *id,
                to: message.to.masked(),
                status: message.status,
                described: follow::describe(message),
            });
        }
        lost_any |= lost;
        unsettled_any |= unsettled;
    }
    Summary {
        rows: rows.len(),
        earlier,
        statuses,
        unfinished,
        lost: lost_any,
        unsettled: unsettled_any,
    }
}

fn print_summary(summary: &Summary, timeout: u64) {
    let counted: Vec<String> = summary
        .statuses
        .iter()
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    println!("{}", counted.join(", "));
    for row in &summary.unfinished {
        println!("line {}: {} {}", row.line, row.to, row.described);
    }
    if summary.unsettled {
        println!(
            "some messages were still on their way after {timeout} s: a running service, or the next run of this file, goes on with them"
        );
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
