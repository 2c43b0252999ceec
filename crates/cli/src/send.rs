//! `send --to`: one message, stored, sent in-process and followed to its final status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use app::config::Sending;
use app::messaging::{Content, SendRequest};
use domain::MessageStatus;
use ports::Enqueued;

use crate::args::SendArgs;
use crate::environment;
use crate::follow::{self, describe};

pub async fn run(api_key: &str, args: SendArgs) -> anyhow::Result<ExitCode> {
    let to = args.to.context("--to or --csv is required")?;
    let content = match (args.template, args.body) {
        (Some(name), None) => Content::Template {
            name,
            data: template_data(args.data),
        },
        (None, Some(body)) => Content::Body(body),
        _ => anyhow::bail!("give either --template or --body"),
    };
    let assembled = environment::assemble(Sending::Required).await?;
    let services = assembled.services;
    let enqueued = services
        .send_message(
            api_key,
            SendRequest {
                to,
                channel: args.channel,
                content,
                idempotency_key: args.idempotency_key,
            },
        )
        .await?;
    if let Enqueued::Existing(message) = &enqueued {
        println!(
            "message {} was sent before with this idempotency key",
            message.id
        );
    }
    let id = enqueued.message().id;
    println!("message {id} to {}", enqueued.message().to.masked());
    let last = follow::with_dispatcher(
        assembled.dispatcher,
        follow::follow_one(
            &services,
            id,
            Duration::from_secs(args.timeout),
            |message| println!("{}", describe(message)),
        ),
    )
    .await?;
    Ok(outcome(&services, last.status, args.timeout))
}

/// Success once the message is settled and not lost; a message still on its way is the
/// service's to finish, which is no failure of this command.
pub fn outcome(services: &app::Services, status: MessageStatus, timeout: u64) -> ExitCode {
    match status {
        MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired => {
            ExitCode::FAILURE
        }
        status if !follow::is_settled(services, status) => {
            println!(
                "still {status} after {timeout} s: it stays queued, and a running service (or the next run of this command) goes on with it"
            );
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    }
}

/// `--data` pairs as the template's variables (all strings, as they were typed).
pub fn template_data(pairs: Vec<(String, String)>) -> serde_json::Value {
    serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key, serde_json::Value::String(value)))
            .collect(),
    )
}
