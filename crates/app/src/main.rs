//! The sms-notify service: what `cargo run` starts. Configuration comes from the environment
//! (see README.md); with none, it runs on an embedded SQLite file and prints SMS to the log.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match app::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            // One sentence naming the variable: an operator reads it in a crash-looping pod.
            eprintln!("invalid configuration: {error}");
            std::process::exit(2);
        }
    };
    app::telemetry::init(config.log_format);
    app::server::serve(config)
        .await
        .context("the service stopped")?;
    Ok(())
}
