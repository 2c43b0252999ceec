//! What every command starts from: the configuration, the CLI's logging, and the wired
//! adapters; and the two commands that are nothing more (`serve`, `migrate`).

use std::process::ExitCode;

use anyhow::Context;
use app::wiring::config::{DatabaseConfig, LogFormat, Sending};
use app::wiring::server::Assembled;
use app::Config;

/// The configuration from the environment, as the service reads it (the embedded database's
/// pepper is kept beside its file, so `verify start` and `verify check`, two runs, agree). A
/// command that sends nothing reads it with [`Sending::NotNeeded`]: an operator may report on a
/// deployment without holding its provider's secrets.
pub fn configuration(sending: Sending) -> anyhow::Result<Config> {
    Config::from_env_for(sending).context("invalid configuration")
}

/// Logs go to stderr, so that stdout carries only results, in the service's `LOG_FORMAT`.
pub fn init_logging(format: LogFormat) {
    app::observability::telemetry::init_for(
        format,
        app::observability::telemetry::Audience::Operator,
    );
}

/// Configuration, logging and the wired adapters, for the commands that use the database.
pub async fn assemble(sending: Sending) -> anyhow::Result<Assembled> {
    let config = configuration(sending)?;
    init_logging(config.log_format);
    app::wiring::server::assemble(&config)
        .await
        .context("cannot open sms-notify's stores")
}

pub async fn serve() -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("invalid configuration")?;
    let (traces, tracer) = app::observability::traces::Traces::start(&config.traces)
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    app::observability::telemetry::init(config.log_format, tracer);
    let served = app::wiring::server::serve(config).await;
    traces.shutdown().await;
    served.context("the service stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate() -> anyhow::Result<ExitCode> {
    let database = DatabaseConfig::from_env().context("invalid configuration")?;
    let ran = app::wiring::store::chosen(&database).migrate().await?;
    if ran.is_empty() {
        println!("{}: up to date, no migration ran", database.describe());
    } else {
        println!("{}: ran {} migrations", database.describe(), ran.len());
        for migration in ran {
            println!("  {migration}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
