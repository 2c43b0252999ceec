//! The sms-notify service: what `cargo run` starts. Configuration comes from the environment
//! (see README.md); with none, it runs on an embedded SQLite file and prints SMS to the log.

use anyhow::Context;

const USAGE: &str = "\
sms-notify-server: the sms-notify service (HTTP API, dispatcher, status callbacks)

usage: sms-notify-server [--help | --version]

All configuration is environment variables (README.md, Configuration): DATABASE_URL,
BIND_ADDR, API_KEYS, ADMIN_API_KEYS, TWILIO_ACCOUNT_SID, ... With none, the service runs on
an embedded SQLite file under ./data/ and prints each SMS to its log.

exit status: 0 after a graceful shutdown (SIGTERM, ctrl-c); 2 for a bad or missing setting
(one line naming the variable); 1 when the service stops on an error.
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Arguments are only these; anything else starting the service would surprise an operator
    // who meant to ask what it does.
    if let Some(argument) = std::env::args().nth(1) {
        match argument.as_str() {
            "--help" | "-h" => print!("{USAGE}"),
            "--version" | "-V" => println!("sms-notify-server {}", env!("CARGO_PKG_VERSION")),
            other => {
                eprintln!("error: unexpected argument `{other}` (see --help)");
                std::process::exit(2);
            }
        }
        return Ok(());
    }
    let config = match app::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            // One sentence naming the variable: an operator reads it in a crash-looping pod.
            eprintln!("invalid configuration: {error}");
            std::process::exit(2);
        }
    };
    app::observability::telemetry::init(config.log_format);
    app::wiring::server::serve(config)
        .await
        .context("the service stopped")?;
    Ok(())
}
