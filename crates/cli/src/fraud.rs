//! `fraud list|block|unblock|safe-list|decisions`: the fraud guard's admin side from a terminal,
//! through the same use cases and in the same documents as the admin routes under `/v1/fraud`.
//! Like every command it works on the database directly: whoever holds DATABASE_URL is an
//! admin, and `--api-key-name` is the name recorded beside what it changes.

use std::process::ExitCode;

use app::http::{decision_cursor, BlockList, BlockView, DecisionPage, SafeEntryView, SafeList};
use app::usecases::fraud_admin::{ManualBlock, Note};
use app::wiring::config::Sending;
use app::Services;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use domain::fraud::{Action, Block, BlockPeriod, Prefix};
use ports::{DecisionFilter, LoggedDecision};

use crate::args::Instant;
use crate::environment;
use crate::failure::Failure;
use crate::report::layout;

#[derive(Debug, Subcommand)]
pub enum FraudCommand {
    /// The blocks in force, the guard's and the admins': prefix, codes counted, when placed,
    /// renewed and lifting, and each reason with its detail.
    List,

    /// Block a prefix by hand (reason manual_block), replacing any block it held; the guard
    /// never overrides nor renews it. Every instance refuses codes to it within a second.
    ///
    /// Example: sms-notify fraud block +447700900 --note "carrier report 12" --hours 48
    Block {
        /// `+` and 1 to 15 digits: a range (+447700900) or a whole number.
        #[arg(value_parser = prefix)]
        prefix: Prefix,

        /// Why, in a few words (at most 200 characters), shown in the block's reason.
        #[arg(long, value_parser = note)]
        note: Option<Note>,

        /// How long the block lasts, 1 to 720 hours; without it, until `fraud unblock`.
        #[arg(long, value_name = "HOURS", value_parser = block_period)]
        hours: Option<BlockPeriod>,
    },

    /// Lift the block in force on exactly this prefix, the guard's or an admin's. Exits 1 when
    /// there is none.
    Unblock {
        /// The prefix as `fraud list` shows it.
        #[arg(value_parser = prefix)]
        prefix: Prefix,
    },

    /// The safe list: ranges and whole numbers the guard never blocks (the send limits still
    /// apply to them).
    #[command(subcommand)]
    SafeList(SafeListCommand),

    /// The guard's decision log, newest first: every block, and what monitored policies would
    /// have done. Numbers are shown as their range, without their last three digits.
    Decisions(DecisionArgs),
}

#[derive(Debug, Subcommand)]
pub enum SafeListCommand {
    /// Every entry, by prefix.
    List,

    /// Add a range or a whole number, or replace the note of its entry.
    ///
    /// Example: sms-notify fraud safe-list add +15551234567 --note "QA phone"
    Add {
        /// `+` and 1 to 15 digits.
        #[arg(value_parser = prefix)]
        prefix: Prefix,

        /// Why it is there (at most 200 characters).
        #[arg(long, value_parser = note)]
        note: Option<Note>,
    },

    /// Remove exactly this entry. Exits 1 when it is not on the list.
    Remove {
        #[arg(value_parser = prefix)]
        prefix: Prefix,
    },
}

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// Only decisions with this action: allow, monitor or block.
    #[arg(long, value_parser = action)]
    pub action: Option<Action>,

    /// Only decisions at or after this instant (RFC 3339), or this long ago (7d, 24h).
    #[arg(long, value_name = "WHEN", value_parser = crate::args::instant)]
    pub since: Option<Instant>,

    /// Only decisions before this instant (RFC 3339), or this long ago (7d, 24h).
    #[arg(long, value_name = "WHEN", value_parser = crate::args::instant)]
    pub until: Option<Instant>,

    /// How many decisions, 1 to 100.
    #[arg(long, default_value_t = app::http::DEFAULT_PAGE,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(app::http::MAX_PAGE)))]
    pub limit: u32,

    /// The next page: the `next_cursor` of an earlier list (--json prints it).
    #[arg(long)]
    pub cursor: Option<String>,
}

pub async fn run(admin: &str, command: FraudCommand, json: bool) -> anyhow::Result<ExitCode> {
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    match command {
        FraudCommand::Decisions(args) => return decisions(&services, args, json).await,
        FraudCommand::List => {
            let blocks = services.fraud_blocks().await?;
            if json {
                crate::print_json(&BlockList::new(blocks))?;
            } else if blocks.is_empty() {
                println!("no blocks in force");
            } else {
                print!("{}", layout(&block_table(&blocks, services.now())));
            }
        }
        FraudCommand::Block {
            prefix,
            note,
            hours,
        } => {
            let block = services
                .block_prefix(
                    admin,
                    ManualBlock {
                        prefix,
                        note,
                        period: hours,
                    },
                )
                .await?;
            if json {
                crate::print_json(&BlockView::from(block))?;
            } else {
                println!(
                    "blocked {} until {}",
                    block.prefix,
                    block.expires_at.map_or_else(|| "lifted".to_owned(), time)
                );
            }
        }
        FraudCommand::Unblock { prefix } => {
            if !services.unblock_prefix(admin, &prefix).await? {
                return Err(Failure::negative(format!(
                    "no block is in force on exactly {prefix}; `sms-notify fraud list` shows those that are"
                )));
            }
            if !json {
                println!("unblocked {prefix}");
            } else {
                crate::print_json(&serde_json::json!({"unblocked": prefix}))?;
            }
        }
        FraudCommand::SafeList(SafeListCommand::List) => {
            let entries = services.fraud_safe_list().await?;
            if json {
                crate::print_json(&SafeList::new(entries))?;
            } else if entries.is_empty() {
                println!("the safe list is empty");
            } else {
                let mut rows = vec![vec!["prefix".into(), "added".into(), "note".into()]];
                rows.extend(entries.iter().map(|entry| {
                    vec![
                        entry.prefix.to_string(),
                        time(entry.added_at),
                        entry.note.clone().unwrap_or_else(|| "-".into()),
                    ]
                }));
                print!("{}", layout(&rows));
            }
        }
        FraudCommand::SafeList(SafeListCommand::Add { prefix, note }) => {
            let entry = services.add_safe_prefix(admin, prefix, note).await?;
            if json {
                crate::print_json(&SafeEntryView::from(entry))?;
            } else {
                println!("{} is on the safe list", entry.prefix);
            }
        }
        FraudCommand::SafeList(SafeListCommand::Remove { prefix }) => {
            if !services.remove_safe_prefix(admin, &prefix).await? {
                return Err(Failure::negative(format!(
                    "{prefix} is not on the safe list"
                )));
            }
            if json {
                crate::print_json(&serde_json::json!({"removed": prefix}))?;
            } else {
                println!("{prefix} is off the safe list");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decisions(
    services: &Services,
    args: DecisionArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let before = args
        .cursor
        .as_deref()
        .map(decision_cursor)
        .transpose()
        .map_err(|problem| Failure::usage(format!("--cursor: {}", problem.detail)))?;
    let now = services.now();
    let filter = DecisionFilter {
        action: args.action,
        since: args.since.map(|since| since.resolve(now)),
        until: args.until.map(|until| until.resolve(now)),
        before,
        // One more than asked for, to know whether more follow.
        limit: args.limit + 1,
    };
    let decisions = services.fraud_decisions(&filter).await?;
    if json {
        crate::print_json(&DecisionPage::new(decisions, args.limit))?;
        return Ok(ExitCode::SUCCESS);
    }
    if decisions.is_empty() {
        println!("no decisions");
        return Ok(ExitCode::SUCCESS);
    }
    let more = decisions.len() > args.limit as usize;
    let mut rows = vec![["at", "action", "to", "api_key", "user", "reasons"]
        .map(str::to_owned)
        .to_vec()];
    for logged in decisions.iter().take(args.limit as usize) {
        let range = Prefix::of(&logged.to, 3);
        let reasons: Vec<&str> = logged
            .decision
            .reasons
            .iter()
            .map(|reason| reason.code.as_str())
            .collect();
        rows.push(vec![
            time(logged.at),
            logged.decision.action.to_string(),
            format!("{range}***"),
            logged.api_key.clone(),
            user(logged),
            if reasons.is_empty() {
                "-".to_owned()
            } else {
                reasons.join(",")
            },
        ]);
    }
    print!("{}", layout(&rows));
    if more {
        println!("more: --json prints the cursor of the next page");
    }
    Ok(ExitCode::SUCCESS)
}

/// The user the calling service named, marked when it vouched for them; `-` for none.
fn user(logged: &LoggedDecision) -> String {
    match (&logged.user_id, logged.trusted) {
        (Some(user_id), true) => format!("{user_id} (trusted)"),
        (Some(user_id), false) => user_id.clone(),
        (None, true) => "(trusted)".to_owned(),
        (None, false) => "-".to_owned(),
    }
}

/// A row per block and reason: the block's columns on its first reason's row only.
fn block_table(blocks: &[Block], now: DateTime<Utc>) -> Vec<Vec<String>> {
    let header = [
        "prefix", "codes", "created", "renewed", "expires", "reason", "detail",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for block in blocks {
        for (index, reason) in block.reasons.iter().enumerate() {
            let mut row = if index == 0 {
                vec![
                    block.prefix.to_string(),
                    block.codes.to_string(),
                    time(block.created_at),
                    time(block.renewed_at),
                    expiry(block, now),
                ]
            } else {
                vec![String::new(); 5]
            };
            row.push(reason.code.to_string());
            row.push(reason.detail.clone());
            rows.push(row);
        }
    }
    rows
}

/// When a block lifts, and in how long: `2026-03-01T12:00:00Z (in 11h)`, or `until lifted`.
fn expiry(block: &Block, now: DateTime<Utc>) -> String {
    match (block.expires_at, block.retry_after(now)) {
        (Some(at), Some(left)) => {
            let minutes = left.num_minutes();
            let left = if minutes >= 60 {
                format!("{}h", minutes / 60)
            } else {
                format!("{minutes}m")
            };
            format!("{} (in {left})", time(at))
        }
        _ => "until lifted".to_owned(),
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn prefix(text: &str) -> Result<Prefix, String> {
    Prefix::parse(text).map_err(|error| error.to_string())
}

fn note(text: &str) -> Result<Note, String> {
    match Note::parse(text) {
        Ok(Some(note)) => Ok(note),
        Ok(None) => Err("a note has some text; leave --note out for none".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

fn block_period(text: &str) -> Result<BlockPeriod, String> {
    text.parse::<BlockPeriod>()
        .map_err(|error| error.to_string())
}

fn action(text: &str) -> Result<Action, String> {
    text.parse::<Action>()
        .map_err(|_| "expected allow, monitor or block".to_owned())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use domain::fraud::{Reason, ReasonCode};

    use super::*;

    #[test]
    fn a_block_with_two_reasons_takes_two_rows_and_says_when_it_lifts() {
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(20_000);
        let block = Block::new(
            Prefix::parse("+447700900").unwrap(),
            vec![
                Reason::new(ReasonCode::PrefixSurge, "40 codes in an hour"),
                Reason::new(ReasonCode::PrefixLowConversion, "0 of 40 checked"),
            ],
            40,
            now,
            BlockPeriod::default(),
        );
        let rows = block_table(&[block], now + TimeDelta::minutes(30));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1][0], "+447700900");
        assert!(rows[1][4].ends_with("(in 11h)"), "{:?}", rows[1]);
        assert_eq!(rows[1][5], "prefix_surge");
        assert_eq!(rows[2][..5], ["", "", "", "", ""]);
        assert_eq!(rows[2][5], "prefix_low_conversion");
    }
}
