//! `check`: is this deployment ready? One line per part, OK or what to fix.

use std::process::ExitCode;

use adapters_twilio::{CredentialsError, TwilioSmsProvider};
use adapters_vonage::VonageSmsProvider;
use app::wiring::config::{DatabaseConfig, ProviderConfig, Sending};
use app::Config;

enum Verdict {
    Ok(String),
    /// Works, but not as production should.
    Warn(String),
    /// What to fix.
    Fail(String),
}

pub async fn run() -> anyhow::Result<ExitCode> {
    // A deployment without a provider is reported below, with the other parts still checked.
    let config = match Config::from_env_for(Sending::NotNeeded) {
        Ok(config) => config,
        Err(error) => {
            report("configuration", &Verdict::Fail(error.to_string()));
            println!("the other checks need a valid configuration");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut verdicts = vec![
        (
            "configuration",
            Verdict::Ok("every variable is valid".to_owned()),
        ),
        ("database", database(&config.database).await),
        ("templates", templates(&config)),
    ];
    // One line per provider, in failover order.
    for provider_config in &config.providers {
        verdicts.push(("provider", provider(provider_config).await));
    }
    for (part, verdict) in &verdicts {
        report(part, verdict);
    }
    Ok(
        if verdicts
            .iter()
            .any(|(_, verdict)| matches!(verdict, Verdict::Fail(_)))
        {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn report(part: &str, verdict: &Verdict) {
    let (label, text) = match verdict {
        Verdict::Ok(text) => ("OK  ", text),
        Verdict::Warn(text) => ("WARN", text),
        Verdict::Fail(text) => ("FAIL", text),
    };
    println!("{label}  {part:<14}{text}");
}

async fn database(config: &DatabaseConfig) -> Verdict {
    let database = app::wiring::store::chosen(config);
    match database.pending_migrations().await {
        Ok(None) => Verdict::Ok(format!("{}, created at the first start", config.describe())),
        Ok(Some(pending)) if pending.is_empty() => {
            Verdict::Ok(format!("{}, schema up to date", config.describe()))
        }
        Ok(Some(pending)) => Verdict::Ok(format!(
            "{}, {} migrations to run (`sms-notify migrate`, or the service at start)",
            config.describe(),
            pending.len()
        )),
        Err(error) => Verdict::Fail(format!(
            "{}: {}: {}",
            config.describe(),
            error_chain(&error),
            database.advice()
        )),
    }
}

fn templates(config: &Config) -> Verdict {
    match app::wiring::server::load_templates(config) {
        Ok(templates) => Verdict::Ok(templates.names().collect::<Vec<_>>().join(", ")),
        Err(error) => Verdict::Fail(format!("{error}: fix the file in TEMPLATES_DIR")),
    }
}

async fn provider(provider: &ProviderConfig) -> Verdict {
    let twilio = match provider {
        ProviderConfig::Console => {
            return Verdict::Warn(
                "console (SMS_PROVIDERS=console, or the embedded database without TWILIO_ACCOUNT_SID): SMS are printed to the log, not sent".to_owned(),
            )
        }
        ProviderConfig::Missing => {
            return Verdict::Fail(
                "none: with PostgreSQL the service will not start; set TWILIO_ACCOUNT_SID (or VONAGE_API_KEY), or SMS_PROVIDERS=console".to_owned(),
            )
        }
        ProviderConfig::Twilio(twilio) => twilio,
        ProviderConfig::Vonage(vonage) => {
            return match VonageSmsProvider::new(vonage.as_ref().clone()) {
                Ok(_) => Verdict::Ok(
                    "Vonage is configured (its SMS API offers no credentials check)".to_owned(),
                ),
                Err(error) => Verdict::Fail(format!("Vonage configuration: {error}")),
            }
        }
    };
    let client = match TwilioSmsProvider::new(twilio.as_ref().clone()) {
        Ok(client) => client,
        Err(error) => return Verdict::Fail(format!("Twilio configuration: {error}")),
    };
    match client.check_credentials().await {
        Ok(account) => Verdict::Ok(format!(
            "Twilio account {}{} is active",
            account.sid,
            account
                .friendly_name
                .map(|name| format!(" ({name})"))
                .unwrap_or_default()
        )),
        Err(error @ CredentialsError::Rejected(_)) => Verdict::Fail(format!(
            "{error}: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET)"
        )),
        Err(error @ CredentialsError::AccountNotActive(_)) => {
            Verdict::Fail(format!("{error}: reactivate it in Twilio's console"))
        }
        Err(error @ CredentialsError::Unavailable(_)) => Verdict::Fail(format!(
            "{error}: check TWILIO_API_BASE_URL and the network, then try again"
        )),
    }
}

/// An error and its sources, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
