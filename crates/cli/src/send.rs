//! `send --to`: one message, stored, sent in-process and followed to its final status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use app::http::MessageView;
use app::usecases::messaging::{Content, SendError, SendRequest};
use app::wiring::config::Sending;
use domain::MessageStatus;
use ports::Enqueued;
use template::Templates;

use crate::args::SendArgs;
use crate::environment;
use crate::failure::{Class, Failure};
use crate::follow::{self, describe};

pub async fn run(api_key: &str, args: SendArgs, json: bool) -> anyhow::Result<ExitCode> {
    let to = args.to.context("--to or --csv is required")?;
    let assembled = environment::assemble(Sending::Required).await?;
    let services = assembled.services;
    let content = match (args.template, args.body) {
        (Some(name), None) => Content::Template {
            data: template_data(services.templates(), &name, args.data)?,
            name,
        },
        (None, Some(body)) => Content::Body(body),
        _ => anyhow::bail!("give either --template or --body"),
    };
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
        .await
        .map_err(send_error)?;
    if let (Enqueued::Existing(message), false) = (&enqueued, json) {
        println!(
            "message {} was sent before with this idempotency key",
            message.id
        );
    }
    let id = enqueued.message().id;
    if !json {
        println!("message {id} to {}", enqueued.message().to.masked());
    }
    let last = follow::with_dispatcher(
        assembled.dispatcher,
        follow::follow_one(
            &services,
            id,
            Duration::from_secs(args.timeout),
            |message| {
                if !json {
                    println!("{}", describe(message));
                }
            },
        ),
    )
    .await?;
    if json {
        let (message, attempts) = services
            .message(api_key, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("message {id} is no longer stored"))?;
        crate::print_json(&MessageView::new(message, attempts))?;
        return Ok(outcome(&services, last.status, None));
    }
    Ok(outcome(&services, last.status, Some(args.timeout)))
}

/// A store's failure is the database's (exit 3); any other refusal is the command's mistake.
pub fn send_error(error: SendError) -> anyhow::Error {
    match error {
        SendError::Store(error) => error.into(),
        error => Failure::usage(error.to_string()),
    }
}

/// Success once the message is settled and not lost; a message still on its way is the
/// service's to finish, which is no failure of this command (said when `timeout` is given).
pub fn outcome(services: &app::Services, status: MessageStatus, timeout: Option<u64>) -> ExitCode {
    match status {
        MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired => {
            Class::Negative.into()
        }
        status if !follow::is_settled(services, status) => {
            if let Some(timeout) = timeout {
                println!(
                    "still {status} after {timeout} s: it stays queued, and a running service (or the next run of this command) goes on with it"
                );
            }
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    }
}

/// `--data` pairs as the template's variables (all strings, as they were typed). A key the
/// template does not read is refused: it is a typo, and the variable it meant would be missing
/// or, worse, optional and silently left out.
pub fn template_data(
    templates: &Templates,
    template: &str,
    pairs: Vec<(String, String)>,
) -> anyhow::Result<serde_json::Value> {
    if let Some(known) = variables_of(templates, template) {
        if let Some((key, _)) = pairs.iter().find(|(key, _)| !known.contains(key)) {
            return Err(Failure::usage(format!(
                "--data {key}: template `{template}` has no variable `{key}`; its variables: {}",
                list(&known)
            )));
        }
    }
    Ok(serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key, serde_json::Value::String(value)))
            .collect(),
    ))
}

/// The variables `template` reads, from the catalogue behind GET /v1/templates; `None` for a
/// template that does not exist, which rendering reports.
pub fn variables_of(templates: &Templates, template: &str) -> Option<Vec<String>> {
    templates
        .catalogue()
        .into_iter()
        .find(|info| info.name == template)
        .map(|info| info.variables)
}

/// `a, b` or `none`, for a message.
pub fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
