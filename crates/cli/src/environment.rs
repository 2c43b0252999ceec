//! What every command starts from: the configuration, the CLI's logging, and the wired
//! adapters; and the two commands that are nothing more (`serve`, `migrate`).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use adapters_postgres::PgStore;
use adapters_sqlite::SqliteStore;
use anyhow::Context;
use app::config::DatabaseConfig;
use app::server::Assembled;
use app::Config;
use secrecy::{ExposeSecret, SecretString};

/// Where the CLI keeps the code pepper of an embedded database when `CODE_PEPPER` is unset,
/// beside the database file.
const PEPPER_FILE: &str = "code-pepper";

/// The configuration from the environment, as the service reads it, except for the pepper of
/// an embedded database: the service draws one per run, but `verify start` and `verify check`
/// are two runs that must agree, so the CLI keeps one beside the SQLite file.
pub fn configuration() -> anyhow::Result<Config> {
    let mut config = Config::from_env().context("invalid configuration")?;
    let pepper_set = std::env::var("CODE_PEPPER").is_ok_and(|pepper| !pepper.trim().is_empty());
    if let (DatabaseConfig::Sqlite { path }, false) = (&config.database, pepper_set) {
        config.code_pepper = pepper_beside(path)?;
    }
    Ok(config)
}

/// Logs go to stderr, so that stdout carries only results. Quiet by default, but for the
/// console provider's lines: without Twilio, they are how a code or message is seen.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,app::console=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .without_time()
        .try_init();
}

/// Configuration, logging and the wired adapters, for the commands that use the database.
pub async fn assemble() -> anyhow::Result<Assembled> {
    let config = configuration()?;
    init_logging();
    app::server::assemble(&config)
        .await
        .context("cannot open sms-notify's stores")
}

pub async fn serve() -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("invalid configuration")?;
    app::telemetry::init(config.log_format);
    app::server::serve(config)
        .await
        .context("the service stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate() -> anyhow::Result<ExitCode> {
    let database = DatabaseConfig::from_env().context("invalid configuration")?;
    let ran = match &database {
        DatabaseConfig::Postgres { url } => PgStore::migrate(url.expose_secret()).await?,
        DatabaseConfig::Sqlite { path } => SqliteStore::migrate(path).await?,
    };
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

fn pepper_beside(database: &Path) -> anyhow::Result<SecretString> {
    let directory = database
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = directory.join(PEPPER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pepper) if !pepper.trim().is_empty() => return Ok(SecretString::from(pepper.trim())),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let pepper = app::codes::random_token(32);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(pepper.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(SecretString::from(pepper))
        }
        // Another run created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let pepper = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(
                !pepper.trim().is_empty(),
                "{} is empty: run again, or delete it",
                path.display()
            );
            Ok(SecretString::from(pepper.trim()))
        }
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}
