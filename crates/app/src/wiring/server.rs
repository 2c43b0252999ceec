//! Turns a [`Config`] into running adapters, the HTTP server and the dispatcher, and runs them
//! until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters_twilio::TwilioSmsProvider;
use adapters_vonage::VonageSmsProvider;
use ports::{QueueWakeups, SentMessageSearch, SmsProvider, StatusLookup};
use secrecy::ExposeSecret;
use template::Templates;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::dispatch::dispatcher::Dispatcher;
use crate::dispatch::reconcile::Reconciler;
use crate::observability::health::Readiness;
use crate::observability::metrics::{MeteredProvider, Metrics};
use crate::providers::console::ConsoleSmsProvider;
use crate::providers::failover::FailoverSmsProvider;
use crate::providers::missing::MissingSmsProvider;
use crate::providers::test_numbers::TestNumberSmsProvider;
use crate::usecases::codes::{CodeHasher, SystemClock};
use crate::wiring::config::{Config, DatabaseConfig, ProviderConfig};
use crate::wiring::store::{self, Stores};
use crate::Services;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database ({0})")]
    Database(String),
    #[error(transparent)]
    Templates(#[from] template::LoadError),
    #[error("Twilio configuration: {0}")]
    Provider(#[from] adapters_twilio::TwilioConfigError),
    #[error("cannot keep the code pepper at {path}: {source}")]
    Pepper {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Vonage configuration: {0}")]
    Vonage(#[from] adapters_vonage::VonageConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

pub struct Server {
    listener: TcpListener,
    /// `METRICS_BIND_ADDR`'s listener: `/metrics` there, and not on `listener`.
    metrics_listener: Option<TcpListener>,
    services: Arc<Services>,
    dispatcher: Dispatcher,
    reconciler: Reconciler,
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
    /// Set when other instances share the queue: their words that messages were queued, for
    /// the service to forward to its dispatcher.
    pub wakeups: Option<Box<dyn QueueWakeups>>,
}

/// Opens the database (migrating it), loads the templates and builds the provider, the use
/// cases and the dispatcher.
pub async fn assemble(config: &Config) -> Result<Assembled, StartupError> {
    let Stores { ports, wakeups } = store::chosen(&config.database)
        .open()
        .await
        .map_err(|error| StartupError::Database(error.to_string()))?;
    tracing::info!(database = %config.database.describe(), "database ready");

    let templates = load_templates(config)?;
    let clock = Arc::new(SystemClock);
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
            ProviderConfig::Console => {
                tracing::warn!(
                    "console provider (SMS_PROVIDERS=console, or the embedded database without TWILIO_ACCOUNT_SID): SMS, codes included, are printed to this log, not sent"
                );
                providers.push(Arc::new(ConsoleSmsProvider));
            }
            ProviderConfig::Missing => providers.push(Arc::new(MissingSmsProvider)),
        }
    }
    let provider: Arc<dyn SmsProvider> = match <[_; 1]>::try_from(providers) {
        Ok([only]) => only,
        Err(providers) => {
            tracing::info!(
                providers = ?config.providers.iter().map(ProviderConfig::name).collect::<Vec<_>>(),
                "providers fail over in this order"
            );
            Arc::new(FailoverSmsProvider::new(
                providers,
                config.circuit,
                clock.clone(),
            ))
        }
    };
    let metrics = Arc::new(Metrics::new());
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
    let wake = Arc::new(Notify::new());
    let messages = ports.messages.clone();
    let services = Arc::new(
        Services::builder(
            ports,
            Arc::new(templates),
            CodeHasher::new(code_pepper(config)?),
        )
        .clock(clock.clone())
        .verification_policy(config.verification)
        .api_keys(config.api_keys.clone())
        .dispatcher_wake(wake.clone())
        .twilio_status_callbacks(config.twilio_status_callbacks.clone())
        .guards(config.guards.clone())
        .metrics(metrics)
        .readiness(readiness)
        .test_numbers(config.test_numbers.clone())
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
    );
    if let Some(search) = search {
        dispatcher = dispatcher.with_sent_message_search(search);
    }
    Ok(Assembled {
        services,
        dispatcher,
        reconciler,
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
            crate::usecases::codes::pepper_kept_in(&file)
                .map_err(|source| StartupError::Pepper { path: file, source })
        }
        // Configuration refuses PostgreSQL without CODE_PEPPER; a random one is still safe.
        (None, DatabaseConfig::Postgres { .. }) => Ok(secrecy::SecretString::from(
            crate::usecases::codes::random_token(32),
        )),
    }
}

/// The configured templates directory, or the built-in templates.
pub fn load_templates(config: &Config) -> Result<Templates, template::LoadError> {
    match &config.templates_dir {
        Some(dir) => Templates::load(dir),
        None => Templates::built_in(),
    }
}

/// The service's whole life, as its binaries run it: build, show a generated API key once,
/// serve until ctrl-c or SIGTERM.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let generated_key = config
        .api_keys_generated
        .then(|| config.api_keys.first_key().cloned())
        .flatten();
    let server = Server::build(config).await?;
    if let Some(key) = generated_key {
        // Printed once, on stdout, so the operator of a no-configuration run can call the API.
        println!("API key: {}", key.expose_secret());
    }
    server.run_until(shutdown_signal()).await
}

impl Server {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let Assembled {
            services,
            dispatcher,
            wakeups,
            reconciler,
        } = assemble(&config).await?;
        let listener = bind(config.bind_addr).await?;
        let metrics_listener = match config.metrics_bind_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            services,
            dispatcher,
            reconciler,
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
            ));
        }
        let reconciler = tokio::spawn(self.reconciler.run(dispatcher_stopped.clone()));
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
        // Scrapeable until the sends in flight have finished.
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        served
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

/// Wakes this instance's dispatcher whenever any instance queues a message, so that a
/// one-time code goes out at once wherever it was accepted.
async fn forward_wakeups(mut wakeups: Box<dyn QueueWakeups>, wake: Arc<Notify>) {
    loop {
        match wakeups.next().await {
            Ok(()) => wake.notify_one(),
            Err(error) => {
                tracing::warn!(%error, "queue notifications interrupted; listening again");
                // The dispatcher's poll covers the gap.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
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
