//! Turns a [`Config`] into running adapters, the HTTP server and the dispatcher, and runs them
//! until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters_twilio::TwilioSmsProvider;
use adapters_vonage::VonageSmsProvider;
use domain::Channel;
use ports::{Clock, QueueWakeups, SentMessageSearch, SmsProvider, StatusLookup, Wakeup};
use secrecy::ExposeSecret;
use template::Templates;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::dispatch::backoff::Backoff;
use crate::dispatch::client_webhooks::WebhookDeliverer;
use crate::dispatch::dispatcher::Dispatcher;
use crate::dispatch::reconcile::Reconciler;
use crate::dispatch::workflows::WorkflowConfig;
use crate::lifecycle::retention::RetentionJob;
use crate::lifecycle::rollups::RollupJob;
use crate::observability::health::Readiness;
use crate::observability::metrics::{MeteredProvider, Metrics};
use crate::providers::console::ConsoleSmsProvider;
use crate::providers::failover::FailoverSmsProvider;
use crate::providers::missing::MissingSmsProvider;
use crate::providers::test_numbers::TestNumberSmsProvider;
use crate::usecases::auth::ApiKeys;
use crate::usecases::channels::OfferedChannels;
use crate::usecases::codes::{CodeHasher, SystemClock};
use crate::usecases::verify_compat::VerifyCompat;
use crate::wiring::config::{Config, DatabaseConfig, ProviderConfig, Sending};
use crate::wiring::store::{self, DatabaseError, Stores};
use crate::Services;

/// Why the service did not start (or stopped). Each says in one line what to fix, and
/// [`StartupError::exit_code`] tells a supervisor whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be reached or opened, or its migrations failed: `database` is
    /// where it is (a PostgreSQL URL without its password), `problem` what its driver said.
    #[error("database {database}: {problem}")]
    Database { database: String, problem: String },
    /// `DATABASE_URL` is not a URL the PostgreSQL driver accepts.
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(String),
    #[error(transparent)]
    Templates(#[from] template::LoadError),
    #[error("Twilio configuration: {0}")]
    Provider(#[from] adapters_twilio::TwilioConfigError),
    #[error("cannot keep the {what} at {path}: {source}")]
    KeptSecret {
        /// `code pepper` or `API key`.
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Vonage configuration: {0}")]
    Vonage(#[from] adapters_vonage::VonageConfigError),
    #[error("{variable}: cannot listen on {addr}: {source}")]
    Bind {
        variable: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the webhook client: {0}")]
    WebhookClient(#[source] reqwest::Error),
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl StartupError {
    /// The exit status this failure ends the process with, as README promises: 2 for a setting
    /// to fix (a value, a templates directory, an address to listen on), 3 for the database
    /// that cannot be reached or used, which a later retry may get past, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::DatabaseUrl(_)
            | StartupError::Templates(_)
            | StartupError::Bind { .. }
            | StartupError::Provider(
                adapters_twilio::TwilioConfigError::InvalidAccountSid
                | adapters_twilio::TwilioConfigError::InvalidMessagingServiceSid
                | adapters_twilio::TwilioConfigError::InvalidApiKeySid
                | adapters_twilio::TwilioConfigError::InvalidBaseUrl(_),
            )
            | StartupError::Vonage(
                adapters_vonage::VonageConfigError::MissingApiKey
                | adapters_vonage::VonageConfigError::MissingFrom
                | adapters_vonage::VonageConfigError::InvalidBaseUrl(_),
            ) => 2,
            StartupError::Database { .. } => 3,
            StartupError::Provider(_)
            | StartupError::Vonage(_)
            | StartupError::KeptSecret { .. }
            | StartupError::WebhookClient(_)
            | StartupError::Serve(_) => 1,
        }
    }

    fn database(database: &DatabaseConfig, error: DatabaseError) -> Self {
        match error {
            DatabaseError::InvalidUrl(problem) => Self::DatabaseUrl(problem),
            DatabaseError::Failed(error) => Self::Database {
                database: database.location(),
                problem: one_line(&*error),
            },
        }
    }
}

/// An error and its sources as one line, each source once: a driver's error often repeats
/// its source's text in its own.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

pub struct Server {
    listener: TcpListener,
    /// `METRICS_BIND_ADDR`'s listener: `/metrics` there, and not on `listener`.
    metrics_listener: Option<TcpListener>,
    services: Arc<Services>,
    dispatcher: Dispatcher,
    reconciler: Reconciler,
    webhook_deliverer: WebhookDeliverer,
    retention: RetentionJob,
    rollups: RollupJob,
    /// Set when other instances share the queue: their words wake this instance's dispatcher.
    wakeups: Option<Box<dyn QueueWakeups>>,
}

/// The adapters and use cases a [`Config`] describes, wired but not yet running: what the
/// service serves, and what the operator CLI drives in-process.
pub struct Assembled {
    pub services: Arc<Services>,
    /// Not started: the caller runs it (and stops it) as it needs.
    pub dispatcher: Dispatcher,
    /// Not started: looks up messages whose delivery status never came.
    pub reconciler: Reconciler,
    /// Not started: sends client webhooks' events and notices expired verifications.
    pub webhook_deliverer: WebhookDeliverer,
    /// Not started: removes what is older than the retention, on one instance at a time.
    pub retention: RetentionJob,
    /// Not started: folds clean hours into the reports' rollups, on one instance at a time.
    pub rollups: RollupJob,
    /// Set when other instances share the queue: their words that messages were queued, for
    /// the service to forward to its dispatcher.
    pub wakeups: Option<Box<dyn QueueWakeups>>,
}

/// Opens the database (migrating it), loads the templates and builds the provider, the use
/// cases and the dispatcher.
pub async fn assemble(config: &Config) -> Result<Assembled, StartupError> {
    assemble_with_clock(config, Arc::new(SystemClock)).await
}

/// [`assemble`] going by `clock`: what tests use to move time (a block's healing, a code's
/// expiry) without waiting for it.
pub async fn assemble_with_clock(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Assembled, StartupError> {
    let Stores {
        ports,
        wakeups,
        events_written,
    } = store::chosen(&config.database)
        .open()
        .await
        .map_err(|error| StartupError::database(&config.database, error))?;
    tracing::info!(
        database = %config.database.describe(),
        pool_size = config.database.pool_size(),
        "database ready"
    );

    let templates = load_templates(config)?;
    let mut providers: Vec<Arc<dyn SmsProvider>> = Vec::new();
    let mut lookups: Vec<Arc<dyn StatusLookup>> = Vec::new();
    // Only Twilio lists the messages it accepted.
    let mut search: Option<Arc<dyn SentMessageSearch>> = None;
    for provider in &config.providers {
        match provider {
            ProviderConfig::Twilio(twilio) => {
                let twilio = Arc::new(TwilioSmsProvider::new(twilio.as_ref().clone())?);
                lookups.push(twilio.clone());
                search = Some(twilio.clone());
                providers.push(twilio);
            }
            // Vonage's SMS API has no status lookup: its messages are not reconciled.
            ProviderConfig::Vonage(vonage) => {
                providers.push(Arc::new(VonageSmsProvider::new(vonage.as_ref().clone())?));
            }
            // Said where SMS are to be sent; a command that sends nothing has nothing to warn of.
            ProviderConfig::Console if config.sending == Sending::NotNeeded => {
                providers.push(Arc::new(ConsoleSmsProvider));
            }
            ProviderConfig::Console => {
                tracing::warn!(
                    "console provider (SMS_PROVIDERS=console, or the embedded database without TWILIO_ACCOUNT_SID): SMS, codes included, are printed to this log, not sent"
                );
                providers.push(Arc::new(ConsoleSmsProvider));
            }
            ProviderConfig::Missing => providers.push(Arc::new(MissingSmsProvider)),
        }
    }
    let mut circuits = None;
    let provider: Arc<dyn SmsProvider> = match <[_; 1]>::try_from(providers) {
        Ok([only]) => only,
        Err(providers) => {
            tracing::info!(
                providers = ?config.providers.iter().map(ProviderConfig::name).collect::<Vec<_>>(),
                "providers fail over in this order"
            );
            let failover = FailoverSmsProvider::new(providers, config.circuit, clock.clone());
            circuits = Some(failover.circuits());
            Arc::new(failover)
        }
    };
    let metrics = Arc::new(Metrics::new());
    let dispatch_metrics = metrics.clone();
    let mut provider: Arc<dyn SmsProvider> =
        Arc::new(MeteredProvider::new(provider, metrics.clone()));
    let readiness = Readiness::new(ports.health.clone(), provider.clone())
        .with_provider_names(config.providers.iter().map(ProviderConfig::name).collect());
    // Outermost, so that a test number's fake send is neither metered nor failed over.
    if !config.test_numbers.is_empty() {
        tracing::warn!(
            "TEST_NUMBERS set: verifications to them use fixed codes and reach no provider"
        );
        provider = Arc::new(TestNumberSmsProvider::new(
            config.test_numbers.clone(),
            provider,
        ));
    }
    // What the providers can carry, asked once: a verification on a channel none of them
    // sends on is refused when it starts, not failed by the dispatcher.
    let channels = OfferedChannels {
        sms: provider.can_send(Channel::Sms),
        whatsapp: provider.can_send(Channel::Whatsapp),
        voice: provider.can_send(Channel::Voice),
    };
    let wake = Arc::new(Notify::new());
    let messages = ports.messages.clone();
    let webhook_deliverer = WebhookDeliverer::new(
        ports.webhooks.clone(),
        ports.messages.clone(),
        ports.verifications.clone(),
        clock.clone(),
        config.webhooks.clone(),
        metrics.clone(),
        events_written,
    )
    .map_err(StartupError::WebhookClient)?;
    let retention = RetentionJob::new(
        ports.lifecycle.clone(),
        clock.clone(),
        metrics.clone(),
        config.retention,
    );
    let rollups = RollupJob::new(
        ports.lifecycle.clone(),
        clock.clone(),
        metrics.clone(),
        config.rollups,
    );
    let services = Arc::new(
        Services::builder(
            ports,
            Arc::new(templates),
            CodeHasher::new(code_pepper(config)?),
        )
        .clock(clock.clone())
        .verification_policy(config.verification)
        .api_keys(api_keys(config)?)
        .dispatcher_wake(wake.clone())
        .twilio_status_callbacks(config.twilio_status_callbacks.clone())
        .guards(config.guards.clone())
        .fraud_guard(config.fraud.clone())
        .metrics(metrics)
        .webhooks(config.webhooks.clone())
        .readiness(readiness)
        .provider_circuits(circuits)
        .test_numbers(config.test_numbers.clone())
        .channels(channels)
        .whatsapp_templates(config.whatsapp_templates.clone())
        .code_texts(config.code_texts.clone())
        .verify_compat(VerifyCompat {
            accounts: config.verify_compat_accounts.clone(),
            public_base_url: config.public_base_url.clone(),
        })
        .build(),
    );
    let reconciler = Reconciler::new(messages.clone(), lookups, clock.clone(), config.reconcile);
    let mut dispatcher = Dispatcher::new(
        messages,
        provider,
        clock,
        config.dispatch,
        config.sender(),
        wake,
    )
    .with_metrics(dispatch_metrics);
    if let Some(search) = search {
        dispatcher = dispatcher.with_sent_message_search(search);
    }
    Ok(Assembled {
        services,
        dispatcher,
        reconciler,
        webhook_deliverer,
        retention,
        rollups,
        wakeups,
    })
}

/// Where the embedded database's pepper is kept when `CODE_PEPPER` is unset: beside the file.
pub const PEPPER_FILE: &str = "code-pepper";

/// `CODE_PEPPER`, or the pepper kept beside the embedded database.
fn code_pepper(config: &Config) -> Result<secrecy::SecretString, StartupError> {
    match (&config.code_pepper, &config.database) {
        (Some(pepper), _) => Ok(pepper.clone()),
        (None, DatabaseConfig::Sqlite { path }) => {
            let file = path.with_file_name(PEPPER_FILE);
            crate::usecases::codes::secret_kept_in(&file).map_err(|source| {
                StartupError::KeptSecret {
                    what: "code pepper",
                    path: file,
                    source,
                }
            })
        }
        // Configuration refuses PostgreSQL without CODE_PEPPER; a random one is still safe.
        (None, DatabaseConfig::Postgres { .. }) => Ok(secrecy::SecretString::from(
            crate::usecases::codes::random_token(32),
        )),
    }
}

/// Where the default run's API key is kept (the embedded database, neither `API_KEYS` nor
/// `ADMIN_API_KEYS`): beside the database file, as the code pepper is, so that a client's key
/// still works after a restart.
pub const API_KEY_FILE: &str = "api-key";

/// The keys the service accepts: those configured, or the default run's, kept beside the
/// embedded database. (With PostgreSQL and no keys, the one generated for this run.)
pub fn api_keys(config: &Config) -> Result<ApiKeys, StartupError> {
    match (&config.database, config.api_keys_generated) {
        (DatabaseConfig::Sqlite { path }, true) => {
            let file = path.with_file_name(API_KEY_FILE);
            crate::usecases::codes::secret_kept_in(&file)
                .map(ApiKeys::default_admin)
                .map_err(|source| StartupError::KeptSecret {
                    what: "API key",
                    path: file,
                    source,
                })
        }
        _ => Ok(config.api_keys.clone()),
    }
}

/// The configured templates directory, or the built-in templates, naming the configured brand.
pub fn load_templates(config: &Config) -> Result<Templates, template::LoadError> {
    let templates = match &config.templates_dir {
        Some(dir) => Templates::load(dir)?,
        None => Templates::built_in()?,
    };
    Ok(templates.with_brand(&config.code_texts.brand))
}

/// The service's whole life, as its binaries run it: build, show a generated API key, serve
/// until ctrl-c or SIGTERM.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let generated_key = if config.api_keys_generated {
        api_keys(&config)?.first_key().cloned()
    } else {
        None
    };
    let log_format = config.log_format;
    let server = Server::build(config).await?;
    if let Some(key) = generated_key {
        // At each start, so the operator of a no-configuration run can call the API.
        crate::observability::telemetry::show_api_key(log_format, key.expose_secret());
    }
    server.run_until(shutdown_signal()).await
}

impl Server {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Server::build`] going by `clock`, for tests that move time.
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let Assembled {
            services,
            dispatcher,
            wakeups,
            reconciler,
            webhook_deliverer,
            retention,
            rollups,
        } = assemble_with_clock(&config, clock).await?;
        let listener = bind("BIND_ADDR", config.bind_addr).await?;
        let metrics_listener = match config.metrics_bind_addr {
            Some(addr) => Some(bind("METRICS_BIND_ADDR", addr).await?),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            services,
            dispatcher,
            reconciler,
            webhook_deliverer,
            retention,
            rollups,
            wakeups,
        })
    }

    /// The address actually bound (the port is chosen by the OS when configured as 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The address `/metrics` is served at when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops taking requests, stops claiming, and
    /// waits (up to a grace period) for the sends in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (stop_dispatcher, dispatcher_stopped) = watch::channel(false);
        if let Some(wakeups) = self.wakeups {
            tokio::spawn(forward_wakeups(
                wakeups,
                self.services.dispatcher_wake().clone(),
                self.webhook_deliverer.wake(),
            ));
        }
        let reconciler = tokio::spawn(self.reconciler.run(dispatcher_stopped.clone()));
        let retention = tokio::spawn(self.retention.run(dispatcher_stopped.clone()));
        let rollups = tokio::spawn(self.rollups.run(dispatcher_stopped.clone()));
        let forget_counts = tokio::spawn(forget_fraud_counts(self.services.clone()));
        let webhooks = tokio::spawn(self.webhook_deliverer.run(dispatcher_stopped.clone()));
        let settle_spend = tokio::spawn(settle_budget_spend(self.services.clone()));
        let workflows = tokio::spawn(crate::dispatch::workflows::run(
            self.services.clone(),
            WorkflowConfig::default(),
            dispatcher_stopped.clone(),
        ));
        let dispatcher = tokio::spawn(self.dispatcher.run(dispatcher_stopped));
        tracing::info!(addr = %self.listener.local_addr().map_err(StartupError::Serve)?, "listening");
        let metrics = self.metrics_listener.map(|listener| {
            tracing::info!(addr = ?listener.local_addr().ok(), "serving /metrics");
            let router = crate::http::metrics_router(self.services.clone());
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, "the metrics listener failed");
                }
            })
        });
        let router = crate::http::router(self.services, metrics.is_some());
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StartupError::Serve);
        let _ = stop_dispatcher.send(true);
        // The dispatcher bounds its own wait by SHUTDOWN_GRACE_SECONDS.
        if let Err(error) = dispatcher.await {
            tracing::error!(%error, "the dispatcher failed");
        }
        // At most one lookup in flight; it only asks, so stopping it loses nothing.
        reconciler.abort();
        // Each batch is a transaction of its own: one cut short removed nothing, and the lease
        // runs out by itself.
        retention.abort();
        // A fold is one transaction: one cut short folded nothing, and the next run folds it.
        rollups.abort();
        // A delete cut short is done again at the next start.
        forget_counts.abort();
        // A delivery cut short is sent again once its lease lapses (at least once).
        webhooks.abort();
        // Settling is one transaction: one cut short is settled again by the next.
        settle_spend.abort();
        // A step cut short is stored whole or not at all; its claim lapses for another.
        workflows.abort();
        // Scrapeable until the sends in flight have finished.
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        served
    }
}

async fn bind(variable: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            variable,
            addr,
            source,
        })
}

/// Wakes this instance's dispatcher whenever another instance queues a message, so that a
/// one-time code goes out at once wherever it was accepted, and its webhook deliverer whenever
/// another instance may have recorded events.
async fn forward_wakeups(
    mut wakeups: Box<dyn QueueWakeups>,
    wake: Arc<Notify>,
    events: Arc<Notify>,
) {
    let mut backoff = Backoff::new();
    loop {
        match wakeups.next().await {
            Ok(Wakeup::Queued) => {
                backoff.succeeded();
                wake.notify_one();
            }
            Ok(Wakeup::Events) => {
                backoff.succeeded();
                events.notify_one();
            }
            Err(error) => {
                let wait = backoff.failed();
                tracing::warn!(
                    %error,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "queue notifications interrupted; listening again"
                );
                // The dispatcher's poll covers the gap; a wake-up now makes it look at once
                // for what was queued while nobody listened.
                tokio::time::sleep(wait).await;
                wake.notify_one();
                events.notify_one();
            }
        }
    }
}

/// How often the fraud guard's counts older than any baseline are forgotten.
const FORGET_FRAUD_COUNTS_EVERY: Duration = Duration::from_secs(3_600);

/// Forgets the fraud guard's old hourly counts, at start and then hourly: each instance does,
/// and a delete that finds nothing is cheap.
async fn forget_fraud_counts(services: Arc<Services>) {
    let mut interval = tokio::time::interval(FORGET_FRAUD_COUNTS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match services.forget_fraud_counts().await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "forgot the fraud guard's old hourly counts"),
            Err(error) => tracing::warn!(%error, "cannot forget the fraud guard's old counts"),
        }
    }
}

/// How often the daily budgets' reservations of messages that left the queue are settled: a
/// message that failed or expired unsent gives its estimate back within this.
pub const SETTLE_BUDGET_SPEND_EVERY: Duration = Duration::from_secs(5);

/// Settles the daily budgets' reservations every [`SETTLE_BUDGET_SPEND_EVERY`]: each instance
/// does, each reservation is settled once, and without budgets nothing is read.
async fn settle_budget_spend(services: Arc<Services>) {
    let mut interval = tokio::time::interval(SETTLE_BUDGET_SPEND_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match services.settle_budget_spend().await {
            Ok(0) => {}
            Ok(messages) => {
                tracing::info!(
                    messages,
                    "gave back the budget reservations of messages that went unsent"
                );
            }
            Err(error) => tracing::warn!(%error, "cannot settle the daily budgets' reservations"),
        }
    }
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, String)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn the_default_runs_api_key_is_kept_beside_its_database_for_its_owner_only() {
        let dir = std::env::temp_dir().join(format!(
            "sms-notify-api-key-{}",
            crate::usecases::codes::random_token(8)
        ));
        let database = format!("sqlite://{}", dir.join("data.sqlite").display());
        let default_run = config(&[("DATABASE_URL", database.clone())]);

        let first = api_keys(&default_run).unwrap();
        let key = first.first_key().unwrap().expose_secret().to_owned();
        let again = api_keys(&default_run).unwrap();
        assert_eq!(again.first_key().unwrap().expose_secret(), key);
        let default = again.authenticate(&key).unwrap();
        assert_eq!(default.name(), "default");
        assert!(default.is_admin());
        let file = dir.join(API_KEY_FILE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Configured keys are the keys: nothing is generated or read.
        std::fs::remove_file(&file).unwrap();
        let configured = config(&[
            ("DATABASE_URL", database),
            ("API_KEYS", "shop:0123456789abcdef".to_owned()),
        ]);
        let keys = api_keys(&configured).unwrap();
        assert_eq!(
            keys.authenticate("0123456789abcdef").unwrap().name(),
            "shop"
        );
        assert!(!file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_startup_error_is_one_line_each_source_once() {
        let error = StartupError::Bind {
            variable: "BIND_ADDR",
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            source: std::io::Error::other("address in use\nsecond line"),
        };
        assert_eq!(
            one_line(&error),
            "BIND_ADDR: cannot listen on 127.0.0.1:8080: address in use second line"
        );
        assert_eq!(error.exit_code(), 2);
    }
}
