//! `messages show` and `messages list`: this API key name's messages, through the same use
//! cases and in the same documents as `GET /v1/messages/{id}` and `GET /v1/messages`.

use std::process::ExitCode;

use app::http::{message_cursor, MessagePage, MessageView};
use app::wiring::config::Sending;
use chrono::SecondsFormat;
use domain::{Attempt, Message, MessageId};
use ports::MessageFilter;

use crate::args::{ListArgs, MessagesCommand};
use crate::environment;
use crate::failure::Failure;
use crate::follow::describe;

pub async fn run(api_key: &str, command: MessagesCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        MessagesCommand::Show { id } => show(api_key, &id, json).await,
        MessagesCommand::List(args) => list(api_key, args, json).await,
    }
}

async fn show(api_key: &str, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id: MessageId = id
        .parse()
        .map_err(|_| Failure::usage(format!("`{id}` is not a message id")))?;
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let (message, attempts) = services
        .message(api_key, id)
        .await?
        .ok_or_else(|| Failure::negative(format!("no message `{id}` of this API key name")))?;
    if json {
        crate::print_json(&MessageView::new(message, attempts))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("message      {}", message.id);
    println!("status       {}", describe(&message));
    println!("to           {}", message.to.masked());
    println!("channel      {}", message.channel);
    println!(
        "template     {}",
        message.template.as_deref().unwrap_or("-")
    );
    println!("segments     {}", message.segments);
    if let Some(price) = &message.price {
        println!("price        {} {}", price.amount, price.currency);
    }
    println!("created_at   {}", time(&message.created_at));
    for attempt in &attempts {
        println!("attempt {:<4} {}", attempt.number, attempt_line(attempt));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api_key: &str, args: ListArgs, json: bool) -> anyhow::Result<ExitCode> {
    let before = args
        .cursor
        .as_deref()
        .map(message_cursor)
        .transpose()
        .map_err(|problem| Failure::usage(format!("--cursor: {}", problem.detail)))?;
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let now = services.now();
    let filter = MessageFilter {
        api_key: Some(api_key.to_owned()),
        status: args.status,
        to: args.to,
        since: args.since.map(|since| since.resolve(now)),
        until: args.until.map(|until| until.resolve(now)),
        before,
        // One more than asked for, to know whether more follow.
        limit: args.limit + 1,
    };
    let messages = services.list_messages(&filter).await?;
    if json {
        crate::print_json(&MessagePage::new(messages, args.limit))?;
        return Ok(ExitCode::SUCCESS);
    }
    let more = messages.len() > args.limit as usize;
    for (message, _) in messages.iter().take(args.limit as usize) {
        println!("{}", message_line(message));
    }
    if more {
        println!("more: --json prints the cursor of the next page");
    }
    Ok(ExitCode::SUCCESS)
}

fn message_line(message: &Message) -> String {
    format!(
        "{}  {}  {}  {}  {}",
        message.id,
        time(&message.created_at),
        message.to.masked(),
        message.template.as_deref().unwrap_or("-"),
        describe(message)
    )
}

fn attempt_line(attempt: &Attempt) -> String {
    let mut line = format!(
        "{} {} {}",
        time(&attempt.started_at),
        attempt.provider.as_deref().unwrap_or("-"),
        serde_json::to_value(attempt.outcome)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    if let Some(code) = &attempt.error_code {
        line.push_str(&format!(" {code}"));
    }
    if let Some(text) = &attempt.error_message {
        line.push_str(&format!(": {text}"));
    }
    line
}

fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
