//! `sms-notify`, the operator's command-line tool. It reuses the service's crates directly (the
//! adapters, the templates, `app`'s use cases and dispatcher) with no HTTP round trip, so it
//! works whether or not a service is running.
//!
//! Like `app`, it may name concrete adapters; nothing may depend on it.

mod args;
mod bulk;
mod check;
mod environment;
mod erase;
mod failure;
mod follow;
mod fraud;
mod manual;
mod messages;
mod openapi;
mod render;
mod report;
mod send;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            failure::class_of(&error).into()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let api_key = cli.api_key_name.as_str();
    let json = cli.json;
    match cli.command {
        Command::Serve => environment::serve().await,
        Command::Migrate => environment::migrate().await,
        Command::Check => check::run().await,
        Command::Render(args) => render::run(args, json),
        Command::Send(args) if args.csv.is_some() => bulk::run(api_key, args, json).await,
        Command::Send(args) => send::run(api_key, args, json).await,
        Command::Verify(command) => verify::run(api_key, command, json).await,
        Command::Messages(command) => messages::run(api_key, command, json).await,
        Command::Fraud(command) => fraud::run(api_key, command, json).await,
        Command::Report(args) => report::run(args, json).await,
        Command::Erase { number } => erase::run(api_key, &number, json).await,
        Command::Openapi => openapi::run().map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => manual::completions(shell).map(|()| ExitCode::SUCCESS),
        Command::Man { out_dir } => manual::man(out_dir.as_deref()).map(|()| ExitCode::SUCCESS),
    }
}

/// `--json`'s output: one document, alone on stdout.
pub fn print_json(document: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(document)?);
    Ok(())
}
