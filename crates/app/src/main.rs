//! The sms-notify service: what `cargo run` starts. Configuration comes from the environment
//! (see README.md); with none, it runs on an embedded SQLite file and prints SMS to the log.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = app::Config::from_env().context("invalid configuration")?;
    app::telemetry::init(config.log_format);
    app::server::serve(config)
        .await
        .context("the service stopped")?;
    Ok(())
}
