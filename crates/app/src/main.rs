//! The sms-notify service: what `cargo run` starts. Configuration comes from the environment
//! (see README.md); with none, it runs on an embedded SQLite file and prints SMS to the log.

use anyhow::Context;
use secrecy::ExposeSecret;

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
    let generated_key = config
        .api_keys_generated
        .then(|| config.api_keys.first_key().cloned())
        .flatten();
    let server = app::Server::build(config)
        .await
        .context("cannot start the service")?;
    if let Some(key) = generated_key {
        // Printed once, on stdout, so the operator of a no-configuration run can call the API.
        println!("API key: {}", key.expose_secret());
    }
    server.run_until(app::server::shutdown_signal()).await?;
    Ok(())
}
