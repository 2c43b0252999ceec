//! `check`: is this deployment ready? A table with a row per part (configuration, database,
//! migrations, templates, each provider, the public URL, the webhook endpoints), each OK or
//! what is wrong, and under every warning and failure the fix.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use adapters_twilio::{CredentialsError, TwilioSmsProvider};
use adapters_vonage::VonageSmsProvider;
use app::wiring::config::{
    DatabaseConfig, ProviderConfig, Sending, TwilioStatusCallbacks, STATUS_CALLBACK_PATH,
};
use app::Config;
use url::{Host, Url};

/// The schema this binary migrates to (build.rs), per store.
const SCHEMA_POSTGRES: &str = env!("SMS_NOTIFY_SCHEMA_POSTGRES");
const SCHEMA_SQLITE: &str = env!("SMS_NOTIFY_SCHEMA_SQLITE");
/// A webhook endpoint that has not answered by then will not answer Twilio either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

enum Verdict {
    Ok(String),
    /// Works, but not as production should.
    Warn {
        finding: String,
        fix: String,
    },
    /// Must be fixed before the deployment can do its work.
    Fail {
        finding: String,
        fix: String,
    },
    /// Could not be checked because of a failure in a row above.
    Skipped(String),
}

impl Verdict {
    fn warn(finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Warn {
            finding: finding.into(),
            fix: fix.into(),
        }
    }

    fn fail(finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::Fail {
            finding: finding.into(),
            fix: fix.into(),
        }
    }
}

pub async fn run() -> anyhow::Result<ExitCode> {
    let mut rows: Vec<(String, Verdict)> = Vec::new();
    // A deployment without a provider is reported below, with the other parts still checked.
    match Config::from_env_for(Sending::NotNeeded) {
        Ok(config) => {
            rows.push((
                "configuration".into(),
                Verdict::Ok("every variable is valid".into()),
            ));
            rows.extend(database_and_migrations(&config.database).await);
            rows.push(("templates".into(), templates(&config)));
            // One row per provider, in failover order.
            for provider_config in &config.providers {
                rows.push((
                    format!("provider {}", provider_config.name()),
                    provider(provider_config).await,
                ));
            }
            rows.push(("public URL".into(), public_url(&config)));
            rows.push(("webhooks".into(), webhooks(&config).await));
        }
        Err(error) => {
            rows.push((
                "configuration".into(),
                Verdict::fail(
                    error.to_string(),
                    format!(
                        "correct {} (README.md, Configuration, says what it takes)",
                        error.variable
                    ),
                ),
            ));
            // The database needs DATABASE_URL alone: still worth knowing about.
            match DatabaseConfig::from_env() {
                Ok(database) => rows.extend(database_and_migrations(&database).await),
                Err(_) => rows.push((
                    "database".into(),
                    Verdict::Skipped("needs a valid DATABASE_URL".into()),
                )),
            }
            for part in ["templates", "providers", "public URL", "webhooks"] {
                rows.push((
                    part.into(),
                    Verdict::Skipped("needs a valid configuration".into()),
                ));
            }
        }
    }
    print!("{}", table(&rows));
    let failures = rows
        .iter()
        .filter(|(_, verdict)| matches!(verdict, Verdict::Fail { .. }))
        .count();
    Ok(if failures == 0 {
        println!("ready");
        ExitCode::SUCCESS
    } else {
        println!("{failures} to fix");
        ExitCode::FAILURE
    })
}

/// The rows as a table: status, part, finding, and the fix on a line of its own below.
fn table(rows: &[(String, Verdict)]) -> String {
    let width = rows
        .iter()
        .map(|(part, _)| part.len())
        .chain(["part".len()])
        .max()
        .unwrap_or_default()
        + 2;
    let mut text = format!("{:<6}  {:<width$}{}\n", "status", "part", "finding");
    for (part, verdict) in rows {
        let (status, finding, fix) = match verdict {
            Verdict::Ok(finding) => ("OK", finding, None),
            Verdict::Warn { finding, fix } => ("WARN", finding, Some(fix)),
            Verdict::Fail { finding, fix } => ("FAIL", finding, Some(fix)),
            Verdict::Skipped(why) => ("-", why, None),
        };
        text.push_str(&format!("{status:<6}  {part:<width$}{finding}\n"));
        if let Some(fix) = fix {
            text.push_str(&format!("{:<6}  {:<width$}fix: {fix}\n", "", ""));
        }
    }
    text
}

/// Whether the database answers, and how far its schema is from the one this binary expects.
async fn database_and_migrations(config: &DatabaseConfig) -> [(String, Verdict); 2] {
    let schema = match config {
        DatabaseConfig::Postgres { .. } => SCHEMA_POSTGRES,
        DatabaseConfig::Sqlite { .. } => SCHEMA_SQLITE,
    };
    let database = app::wiring::store::chosen(config);
    match database.pending_migrations().await {
        Err(error) => [
            (
                "database".into(),
                Verdict::fail(
                    format!("{}: {}", config.describe(), error_chain(&error)),
                    database.advice(),
                ),
            ),
            (
                "migrations".into(),
                Verdict::Skipped("needs the database".into()),
            ),
        ],
        // Opening would create the file: a first start does that.
        Ok(None) => [
            (
                "database".into(),
                Verdict::Ok(format!("{}, created at the first start", config.describe())),
            ),
            (
                "migrations".into(),
                Verdict::Ok(format!("schema {schema}, applied at the first start")),
            ),
        ],
        Ok(Some(pending)) => [
            (
                "database".into(),
                Verdict::Ok(format!("{}, reachable", config.describe())),
            ),
            (
                "migrations".into(),
                if pending.is_empty() {
                    Verdict::Ok(format!("schema {schema}, up to date"))
                } else {
                    Verdict::warn(
                        format!(
                            "{} to run to reach schema {schema}: {}",
                            pending.len(),
                            pending.join(", ")
                        ),
                        "run `sms-notify migrate` (the service also runs them when it starts)",
                    )
                },
            ),
        ],
    }
}

fn templates(config: &Config) -> Verdict {
    match app::wiring::server::load_templates(config) {
        // Each template once, its translations counted: naming 64 variants would hide the rest.
        Ok(templates) => Verdict::Ok(
            templates
                .catalogue()
                .iter()
                .map(|info| match info.locales.len() {
                    0 => info.name.clone(),
                    1 => format!("{} (1 locale)", info.name),
                    n => format!("{} ({n} locales)", info.name),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Err(error) => Verdict::fail(error.to_string(), "fix the file in TEMPLATES_DIR"),
    }
}

async fn provider(provider: &ProviderConfig) -> Verdict {
    let twilio = match provider {
        ProviderConfig::Console => {
            return Verdict::warn(
                "console (SMS_PROVIDERS=console, or the embedded database without TWILIO_ACCOUNT_SID): SMS are printed to the log, not sent",
                "set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_PHONE_NUMBER (or VONAGE_*) to send SMS",
            )
        }
        ProviderConfig::Missing => {
            return Verdict::fail(
                "none: with PostgreSQL the service will not start",
                "set TWILIO_ACCOUNT_SID (or VONAGE_API_KEY), or SMS_PROVIDERS=console",
            )
        }
        ProviderConfig::Twilio(twilio) => twilio,
        ProviderConfig::Vonage(vonage) => {
            return match VonageSmsProvider::new(vonage.as_ref().clone()) {
                Ok(_) => Verdict::Ok(
                    "Vonage is configured (its SMS API offers no credentials check)".to_owned(),
                ),
                Err(error) => Verdict::fail(
                    format!("Vonage configuration: {error}"),
                    "check the VONAGE_* variables",
                ),
            };
        }
    };
    let client = match TwilioSmsProvider::new(twilio.as_ref().clone()) {
        Ok(client) => client,
        Err(error) => {
            return Verdict::fail(
                format!("Twilio configuration: {error}"),
                "check the TWILIO_* variables",
            )
        }
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
        Err(error @ CredentialsError::Rejected(_)) => Verdict::fail(
            error.to_string(),
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET)",
        ),
        Err(error @ CredentialsError::AccountNotActive(_)) => {
            Verdict::fail(error.to_string(), "reactivate it in Twilio's console")
        }
        Err(error @ CredentialsError::Unavailable(_)) => Verdict::fail(
            error.to_string(),
            "check TWILIO_API_BASE_URL and the network, then try again",
        ),
    }
}

fn uses_twilio(config: &Config) -> bool {
    config
        .providers
        .iter()
        .any(|provider| matches!(provider, ProviderConfig::Twilio(_)))
}

/// `PUBLIC_BASE_URL`'s form: Twilio must be able to reach it, and signs what it posts to it.
fn public_url(config: &Config) -> Verdict {
    let Some(url) = &config.public_base_url else {
        return if uses_twilio(config) {
            Verdict::warn(
                "PUBLIC_BASE_URL not set: Twilio does not report deliveries; messages stay `sent` until reconciliation asks Twilio",
                "set PUBLIC_BASE_URL to the https URL at which Twilio reaches this service",
            )
        } else {
            Verdict::Ok("not set; no provider posts to this service".into())
        };
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Verdict::fail(
            format!("{url}: not an http(s) URL"),
            "set PUBLIC_BASE_URL to an https URL",
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Verdict::warn(
            format!("{url}: its query and fragment are dropped from the webhook URLs"),
            "remove them from PUBLIC_BASE_URL",
        );
    }
    if let Some(host) = private_host(url) {
        return Verdict::warn(
            format!("{url}: {host} cannot be reached from the internet, so Twilio's posts cannot arrive"),
            "set PUBLIC_BASE_URL to the public host name in front of this service",
        );
    }
    if url.scheme() == "http" {
        return Verdict::warn(
            format!(
                "{url}: plain http, so status reports and their signatures travel in the clear"
            ),
            "serve this service over https and use that URL",
        );
    }
    Verdict::Ok(url.to_string())
}

/// The host of `url` when no one outside this machine or network can reach it.
fn private_host(url: &Url) -> Option<String> {
    let private = match url.host()? {
        Host::Domain(name) => {
            name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
        }
        Host::Ipv4(ip) => {
            let ip = IpAddr::V4(ip);
            ip.is_loopback() || ip.is_unspecified() || is_private_v4(&ip)
        }
        Host::Ipv6(ip) => ip.is_loopback() || ip.is_unspecified(),
    };
    private.then(|| url.host_str().unwrap_or_default().to_owned())
}

fn is_private_v4(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_private() || v4.is_link_local())
}

/// The endpoints that receive posts from outside, each asked whether it answers as
/// sms-notify: an unsigned post must be refused with 403.
async fn webhooks(config: &Config) -> Verdict {
    let Some(callbacks) = &config.twilio_status_callbacks else {
        return Verdict::Ok(if uses_twilio(config) {
            "none: without PUBLIC_BASE_URL Twilio is not asked for status callbacks".into()
        } else {
            "none: no provider posts to this service".into()
        });
    };
    probe_status_callback(callbacks).await
}

async fn probe_status_callback(callbacks: &TwilioStatusCallbacks) -> Verdict {
    let url = &callbacks.url;
    let route_fix = format!(
        "route {url} to the service's {STATUS_CALLBACK_PATH} (the proxy in front forwards it), and start the service"
    );
    let client = match reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            return Verdict::warn(
                format!("Twilio status callbacks at {url}: not probed ({error})"),
                "run check again",
            )
        }
    };
    let answer = client
        .post(url.clone())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await;
    let response = match answer {
        Ok(response) => response,
        // Before the first deployment nothing answers yet: worth a warning, not a failure.
        Err(error) => {
            return Verdict::warn(
                format!(
                    "Twilio status callbacks at {url}: no answer ({})",
                    error_chain(&error)
                ),
                route_fix,
            )
        }
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::FORBIDDEN && body.contains("invalid-signature") {
        Verdict::Ok(format!(
            "Twilio status callbacks at {url}: answered by sms-notify, unsigned posts refused"
        ))
    } else if status == reqwest::StatusCode::NOT_FOUND && body.contains("status callbacks are off")
    {
        Verdict::fail(
            format!("Twilio status callbacks at {url}: the service there has them off"),
            "give that service PUBLIC_BASE_URL and the Twilio credentials, as here",
        )
    } else {
        Verdict::fail(
            format!(
                "Twilio status callbacks at {url}: answered {status}, not as sms-notify refuses an unsigned post (403)"
            ),
            route_fix,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict_for(public_base_url: &str) -> Verdict {
        let config = Config::from_lookup(|name| {
            match name {
                "TWILIO_ACCOUNT_SID" => Some("AC00000000000000000000000000000000"),
                "TWILIO_AUTH_TOKEN" => Some("token"),
                "TWILIO_PHONE_NUMBER" => Some("+15005550006"),
                "PUBLIC_BASE_URL" => Some(public_base_url),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap();
        public_url(&config)
    }

    fn finding(verdict: &Verdict) -> (&'static str, &str) {
        match verdict {
            Verdict::Ok(finding) => ("OK", finding),
            Verdict::Warn { finding, .. } => ("WARN", finding),
            Verdict::Fail { finding, .. } => ("FAIL", finding),
            Verdict::Skipped(why) => ("-", why),
        }
    }

    #[test]
    fn a_public_https_url_passes_and_each_flaw_of_form_is_named() {
        assert_eq!(
            finding(&verdict_for("https://sms.example.com/notify")),
            ("OK", "https://sms.example.com/notify")
        );
        for (url, flaw) in [
            ("http://sms.example.com", "plain http"),
            ("https://localhost:8080", "localhost cannot be reached"),
            ("https://10.1.2.3", "10.1.2.3 cannot be reached"),
            ("https://192.168.0.7", "192.168.0.7 cannot be reached"),
            ("https://[::1]", "[::1] cannot be reached"),
            (
                "https://sms.example.com/?key=1",
                "query and fragment are dropped",
            ),
        ] {
            let verdict = verdict_for(url);
            let (status, text) = finding(&verdict);
            assert_eq!(status, "WARN", "{url}");
            assert!(text.contains(flaw), "{url}: {text}");
        }
    }
}
