//! Configuration from the environment. Every variable is read here and nowhere else; a bad or
//! missing value stops startup with one sentence naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use adapters_twilio::{TwilioConfig, TwilioConfigError, TwilioCredentials, TwilioSender};
use adapters_vonage::VonageConfig;
use chrono::TimeDelta;
use domain::budget::{Budgets, PerCountry};
use domain::fraud::{BlockPeriod, DenyLineTypes, FraudGuard, Mode, Policies, Policy};
use domain::webhook::RetrySchedule;
use domain::{
    Amount, AppDomain, Brand, CodeLength, CountryAllowList, PhoneNumber, PumpingPolicy,
    RetryPolicy, VerificationPolicy,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::dispatch::reconcile::ReconcileConfig;
use crate::lifecycle::retention::RetentionConfig;
use crate::lifecycle::rollups::RollupConfig;
use crate::providers::failover::CircuitPolicy;
use crate::providers::test_numbers::TestNumbers;
use crate::usecases::auth::ApiKeys;
use crate::usecases::channels::WhatsappTemplates;
use crate::usecases::code_texts::CodeTexts;
use crate::usecases::fraud::{BudgetConfig, FraudConfig, IpVelocity};
use crate::usecases::guards::{GuardConfig, SendLimit};
use crate::usecases::verify_compat::TwilioAccounts;

/// A pepper shorter than this is refused: it keys the code hashes, and a short one can be
/// brute-forced together with the 10^6 possible codes.
const MIN_PEPPER_LEN: usize = 32;

/// The longest durations configuration accepts (see `Env::up_to`), in seconds.
const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;
/// [`DAY`] as chrono counts seconds.
const DAY_SECONDS: i64 = 86_400;
const HOUR_MS: u64 = 1_000 * HOUR;
/// A provider call that takes longer has failed anyway.
const TIMEOUT_MS: u64 = 5 * 60 * 1_000;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    Postgres {
        url: SecretString,
        /// The most connections this instance opens (`DATABASE_POOL_SIZE`).
        pool_size: u32,
    },
    Sqlite {
        path: PathBuf,
    },
}

/// `DATABASE_POOL_SIZE` unset: enough for the dispatcher's batches and the API's bursts on a
/// two-core instance without exhausting a shared PostgreSQL when several instances run.
pub const DEFAULT_POOL_SIZE: u32 = 20;
/// The fewest that work: the `LISTEN` of queue wake-ups, the hot paths and the other queries
/// need one each.
pub const MIN_POOL_SIZE: u32 = 3;
/// More than a PostgreSQL server serves well from one client.
pub const MAX_POOL_SIZE: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    /// Each SMS is printed to the log instead of being sent: the embedded default run without
    /// credentials, or asked for by name (`SMS_PROVIDERS=console`).
    Console,
    /// A deployment (PostgreSQL) that names no provider, read for the operator's commands that
    /// send nothing ([`Sending::NotNeeded`]). Every send through it fails.
    Missing,
    Twilio(Box<TwilioConfig>),
    Vonage(Box<VonageConfig>),
}

impl ProviderConfig {
    /// The sending number, messaging service or sender id, which `SENDER_MPS` limits.
    pub fn sender(&self) -> String {
        match self {
            ProviderConfig::Console => "console".to_owned(),
            ProviderConfig::Missing => "none".to_owned(),
            ProviderConfig::Twilio(twilio) => match &twilio.sender {
                TwilioSender::From(number) => number.as_str().to_owned(),
                TwilioSender::MessagingService(sid) => sid.clone(),
            },
            ProviderConfig::Vonage(vonage) => vonage.from.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Console => "console",
            ProviderConfig::Missing => "none",
            ProviderConfig::Twilio(_) => "twilio",
            ProviderConfig::Vonage(_) => "vonage",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DispatchConfig {
    /// Provider calls in flight at once, on every instance together.
    pub concurrency: usize,
    /// Safety-net poll when no wake-up arrives; new work wakes the dispatcher at once.
    pub poll_interval: Duration,
    /// How long a claimed message stays with its worker before another may take it over.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Sends per second through the sending number or service, on every instance together;
    /// `None`: no cap.
    pub sender_mps: Option<u32>,
    /// How long a shutdown waits for sends in flight before handing them back to the queue.
    pub shutdown_grace: Duration,
}

/// How client webhooks are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The waits before each attempt of a delivery.
    pub retry_schedule: RetrySchedule,
    /// Endpoints may be plain `http` and resolve to private addresses (tests, private
    /// networks); otherwise `https` to public addresses only.
    pub allow_private: bool,
    /// The deliverer's safety-net poll: the store wakes it after each change that may have
    /// recorded events, and other instances' changes through theirs.
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::standard(),
            allow_private: false,
            poll_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_addr: SocketAddr,
    /// Where `/metrics` is served instead of at `bind_addr`, when set.
    pub metrics_bind_addr: Option<SocketAddr>,
    pub database: DatabaseConfig,
    pub api_keys: ApiKeys,
    /// The keys were generated for this run and must be shown to the operator once.
    pub api_keys_generated: bool,
    /// In priority order (`SMS_PROVIDERS`); never empty. With more than one, attempts fail over.
    pub providers: Vec<ProviderConfig>,
    pub circuit: CircuitPolicy,
    /// `None` with the embedded database and no `CODE_PEPPER`: the service keeps a generated one
    /// beside the database file (`server::assemble`), so that codes survive a restart.
    pub code_pepper: Option<SecretString>,
    pub log_format: LogFormat,
    pub templates_dir: Option<PathBuf>,
    pub public_base_url: Option<Url>,
    /// Set when Twilio posts delivery statuses to us (`PUBLIC_BASE_URL` with Twilio).
    pub twilio_status_callbacks: Option<TwilioStatusCallbacks>,
    /// WhatsApp codes' approved templates by locale (`TWILIO_WHATSAPP_CONTENT_SIDS`).
    pub whatsapp_templates: WhatsappTemplates,
    pub dispatch: DispatchConfig,
    pub verification: VerificationPolicy,
    /// The brand, language choice and autofill of code texts (`VERIFY_BRAND`,
    /// `VERIFY_AUTO_LOCALE`, `VERIFY_APP_DOMAIN`).
    pub code_texts: CodeTexts,
    pub guards: GuardConfig,
    pub fraud: FraudConfig,
    pub reconcile: ReconcileConfig,
    /// How long stored data is kept (`RETENTION_DAYS`, `MESSAGE_BODY_RETENTION_HOURS`).
    pub retention: RetentionConfig,
    /// The reports' rollup job (defaults; no variable sets it).
    pub rollups: RollupConfig,
    /// Numbers whose verifications never reach a provider and accept a fixed code.
    pub test_numbers: TestNumbers,
    /// The Twilio accounts of the Twilio-compatible Verify API (`VERIFY_COMPAT_ACCOUNTS`);
    /// none: `/v2` is off.
    pub verify_compat_accounts: TwilioAccounts,
    /// Client webhooks' delivery (`WEBHOOK_RETRY_SCHEDULE`, `WEBHOOK_ALLOW_PRIVATE`).
    pub webhooks: WebhookConfig,
    /// OpenTelemetry traces (the SDK's standard `OTEL_*` variables): off without an endpoint.
    pub traces: TracesConfig,
    /// What the configuration was read for: a run that sends nothing is not warned that the
    /// console stands in for a provider.
    pub sending: Sending,
}

/// Whether the configuration is read to send SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// The service, and the operator's commands that send: with PostgreSQL (a deployment), a
    /// configuration without a provider is refused, unless `SMS_PROVIDERS=console` asks for
    /// the console by name. A missing secret must not turn into codes written to the log.
    Required,
    /// The operator's commands that send nothing (`report`, `verify check`, `check`): a
    /// deployment's configuration without its provider's secrets still reads the database.
    NotNeeded,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Config::from_env`], for what `sending` says the configuration is read for.
    pub fn from_env_for(sending: Sending) -> Result<Self, ConfigError> {
        Self::read(|name| std::env::var(name).ok(), sending)
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    /// Empty values count as absent.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(lookup, Sending::Required)
    }

    fn read(
        lookup: impl Fn(&str) -> Option<String>,
        sending: Sending,
    ) -> Result<Self, ConfigError> {
        let env = Env {
            lookup: &|name| lookup(name).filter(|value| !value.trim().is_empty()),
        };
        let database = DatabaseConfig::from_url(env.get("DATABASE_URL"))?
            .with_pool_size(env.number::<u32>("DATABASE_POOL_SIZE")?)?;
        let shared_database = matches!(database, DatabaseConfig::Postgres { .. });

        let (api_keys, api_keys_generated) = api_keys(&env)?;
        let verify_compat_accounts = env
            .get("VERIFY_COMPAT_ACCOUNTS")
            .map(|text| TwilioAccounts::parse(&text, &api_keys))
            .transpose()
            .map_err(|problem| ConfigError::new("VERIFY_COMPAT_ACCOUNTS", problem))?
            .unwrap_or_default();

        let webhooks = WebhookConfig {
            retry_schedule: env
                .parse_with("WEBHOOK_RETRY_SCHEDULE", |text| {
                    text.parse::<RetrySchedule>().map_err(|error| {
                        format!("expected waits such as 0,5s,5m,30m,2h,5h,10h,10h: {error}")
                    })
                })?
                .unwrap_or_else(RetrySchedule::standard),
            allow_private: match env.get("WEBHOOK_ALLOW_PRIVATE").as_deref().map(str::trim) {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(ConfigError::new(
                        "WEBHOOK_ALLOW_PRIVATE",
                        "expected true or false",
                    ))
                }
            },
            poll_interval: Duration::from_millis(env.up_to(
                "WEBHOOK_POLL_INTERVAL_MS",
                250,
                HOUR_MS,
            )?),
        };

        let public_base_url = env.parse_with("PUBLIC_BASE_URL", |text| {
            Url::parse(text).map_err(|error| format!("not a URL ({error})"))
        })?;

        let code_pepper = match env.get("CODE_PEPPER") {
            Some(pepper) if pepper.len() < MIN_PEPPER_LEN => {
                return Err(ConfigError::new(
                    "CODE_PEPPER",
                    format!("must be at least {MIN_PEPPER_LEN} characters"),
                ))
            }
            Some(pepper) => Some(SecretString::from(pepper)),
            // Instances sharing a database must share the pepper, or a code sent by one
            // could not be checked by another.
            None if shared_database => {
                return Err(ConfigError::new(
                    "CODE_PEPPER",
                    "required with a PostgreSQL DATABASE_URL, so that every instance checks codes alike",
                ))
            }
            None => None,
        };

        let verification = VerificationPolicy {
            code_length: match env.number::<i64>("VERIFY_CODE_LENGTH")? {
                Some(digits) => CodeLength::new(digits)
                    .map_err(|error| ConfigError::new("VERIFY_CODE_LENGTH", error.to_string()))?,
                None => CodeLength::default(),
            },
            lifetime: env.seconds("VERIFY_TTL_SECONDS", 600, DAY_SECONDS)?,
            max_checks: env.positive("VERIFY_MAX_CHECKS", 5)?,
            max_sends: env.positive("VERIFY_MAX_SENDS", 5)?,
            resend_interval: env.seconds("VERIFY_RESEND_INTERVAL_SECONDS", 30, DAY_SECONDS)?,
        };

        let code_texts = CodeTexts {
            brand: env
                .parse_with("VERIFY_BRAND", |text| {
                    Brand::parse(text).map_err(|error| error.to_string())
                })?
                .unwrap_or_default(),
            auto_locale: match env.get("VERIFY_AUTO_LOCALE").as_deref().map(str::trim) {
                None | Some("true") => true,
                Some("false") => false,
                Some(_) => {
                    return Err(ConfigError::new(
                        "VERIFY_AUTO_LOCALE",
                        "expected true or false",
                    ))
                }
            },
            app_domain: env.parse_with("VERIFY_APP_DOMAIN", |text| {
                AppDomain::parse(text).map_err(|error| error.to_string())
            })?,
        };

        let guards = guard_config(&env)?;
        let fraud = fraud_config(&env)?;

        let retry_defaults = RetryPolicy::default();
        let dispatch = DispatchConfig {
            concurrency: env.positive("DISPATCH_CONCURRENCY", 50)?,
            poll_interval: Duration::from_millis(env.up_to(
                "DISPATCH_POLL_INTERVAL_MS",
                5_000,
                HOUR_MS,
            )?),
            lease: Duration::from_secs(env.up_to("DISPATCH_LEASE_SECONDS", 60, DAY)?),
            retry: RetryPolicy {
                max_attempts: env.positive("RETRY_MAX_ATTEMPTS", retry_defaults.max_attempts)?,
                base: Duration::from_millis(env.up_to("RETRY_BASE_MS", 2_000, HOUR_MS)?),
                cap: Duration::from_secs(env.up_to("RETRY_CAP_SECONDS", 300, DAY)?),
            },
            sender_mps: match env.number::<u32>("SENDER_MPS")? {
                Some(0) => return Err(ConfigError::new("SENDER_MPS", "must be greater than zero")),
                mps => mps,
            },
            shutdown_grace: Duration::from_secs(env.up_to("SHUTDOWN_GRACE_SECONDS", 10, HOUR)?),
        };

        let providers = providers(
            &env,
            twilio_config(&env, public_base_url.as_ref())?,
            vonage_config(&env)?,
            shared_database.then_some(sending),
        )?;
        let twilio_status_callbacks = twilio_status_callbacks(&env, &providers)?;
        let whatsapp_templates = env
            .parse_with("TWILIO_WHATSAPP_CONTENT_SIDS", WhatsappTemplates::parse)?
            .unwrap_or_default();
        let circuit_defaults = CircuitPolicy::default();
        let circuit = CircuitPolicy {
            failures: env.positive("CIRCUIT_FAILURES", circuit_defaults.failures)?,
            window: Duration::from_secs(env.up_to(
                "CIRCUIT_WINDOW_SECONDS",
                circuit_defaults.window.as_secs(),
                DAY,
            )?),
            cool_down: Duration::from_secs(env.up_to(
                "CIRCUIT_COOL_DOWN_SECONDS",
                circuit_defaults.cool_down.as_secs(),
                DAY,
            )?),
        };
        let reconcile_defaults = ReconcileConfig::default();
        let reconcile = ReconcileConfig {
            after: Duration::from_secs(env.up_to(
                "RECONCILE_AFTER_SECONDS",
                reconcile_defaults.after.as_secs(),
                DAY,
            )?),
            interval: Duration::from_secs(env.up_to(
                "RECONCILE_INTERVAL_SECONDS",
                reconcile_defaults.interval.as_secs(),
                DAY,
            )?),
        };
        let retention = retention(&env)?;
        let test_numbers = test_numbers(&env)?;
        Ok(Self {
            bind_addr: env
                .parse_with("BIND_ADDR", |text| listen_address(text, "127.0.0.1:8080"))?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            metrics_bind_addr: env.parse_with("METRICS_BIND_ADDR", |text| {
                listen_address(text, "127.0.0.1:9090")
            })?,
            providers,
            circuit,
            twilio_status_callbacks,
            whatsapp_templates,
            database,
            api_keys,
            api_keys_generated,
            code_pepper,
            log_format: match env.get("LOG_FORMAT").as_deref() {
                None | Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(_) => return Err(ConfigError::new("LOG_FORMAT", "expected json or pretty")),
            },
            templates_dir: match env.get("TEMPLATES_DIR").map(PathBuf::from) {
                // Named, it must be there: a typo must not fall back to the built-in templates.
                Some(dir) if !dir.is_dir() => {
                    return Err(ConfigError::new(
                        "TEMPLATES_DIR",
                        format!("{} is not a directory", dir.display()),
                    ))
                }
                Some(dir) => Some(dir),
                None => {
                    let default = PathBuf::from("templates");
                    default.is_dir().then_some(default)
                }
            },
            public_base_url,
            dispatch,
            verification,
            code_texts,
            guards,
            fraud,
            reconcile,
            retention,
            rollups: RollupConfig::default(),
            test_numbers,
            verify_compat_accounts,
            webhooks,
            traces: traces(&env)?,
            sending,
        })
    }

    /// The sender that `SENDER_MPS` paces: the first provider's. Failover sends through one
    /// provider at a time, so pacing the chain as one keeps every sender within the rate.
    pub fn sender(&self) -> String {
        self.providers
            .first()
            .map_or_else(|| "console".to_owned(), ProviderConfig::sender)
    }
}

fn guard_config(env: &Env<'_>) -> Result<GuardConfig, ConfigError> {
    let defaults = GuardConfig::default();
    let limit = |max: &'static str, window: &'static str, default: SendLimit| {
        Ok::<_, ConfigError>(SendLimit {
            max: env.positive(max, default.max)?,
            window: env.seconds(window, default.window.num_seconds(), 30 * DAY_SECONDS)?,
        })
    };
    Ok(GuardConfig {
        per_number: limit(
            "VERIFY_SENDS_PER_NUMBER",
            "VERIFY_SENDS_PER_NUMBER_WINDOW_SECONDS",
            defaults.per_number,
        )?,
        per_api_key: limit(
            "VERIFY_SENDS_PER_API_KEY",
            "VERIFY_SENDS_PER_API_KEY_WINDOW_SECONDS",
            defaults.per_api_key,
        )?,
        allowed_countries: env
            .parse_with("ALLOWED_COUNTRIES", |text| {
                CountryAllowList::parse(text).map_err(|error| error.to_string())
            })?
            .unwrap_or_default(),
    })
}

/// Each policy's own mode variable; it wins over `FRAUD_MODE` (and `PUMPING_REFUSE`).
pub const FRAUD_POLICY_VARIABLES: [(Policy, &str); 7] = [
    (Policy::PrefixConversion, "FRAUD_POLICY_PREFIX_CONVERSION"),
    (Policy::PrefixSurge, "FRAUD_POLICY_PREFIX_SURGE"),
    (Policy::CountrySurge, "FRAUD_POLICY_COUNTRY_SURGE"),
    (Policy::LineType, "FRAUD_POLICY_LINE_TYPE"),
    (Policy::IpVelocity, "FRAUD_POLICY_IP_VELOCITY"),
    (Policy::Budget, "FRAUD_POLICY_BUDGET"),
    (Policy::ManualBlock, "FRAUD_POLICY_MANUAL_BLOCK"),
];

/// The fraud guard: `FRAUD_MODE` for every policy, `PUMPING_REFUSE` for the country surge (the
/// pumping alarm it was: `true` enforces, `false` only watches), then each policy's own
/// variable; its thresholds, block period, refused line types and IP velocity limits.
fn fraud_config(env: &Env<'_>) -> Result<FraudConfig, ConfigError> {
    let mode = |name: &'static str| {
        env.parse_with(name, |text| {
            text.parse::<Mode>()
                .map_err(|_| format!("expected enforce, monitor or off, got `{text}`"))
        })
    };
    let mut policies = Policies::all(mode("FRAUD_MODE")?.unwrap_or_default());
    match env.get("PUMPING_REFUSE").as_deref().map(str::trim) {
        None => {}
        Some("true") => policies.set(Policy::CountrySurge, Mode::Enforce),
        Some("false") => policies.set(Policy::CountrySurge, Mode::Monitor),
        Some(_) => return Err(ConfigError::new("PUMPING_REFUSE", "expected true or false")),
    }
    for (policy, variable) in FRAUD_POLICY_VARIABLES {
        if let Some(mode) = mode(variable)? {
            policies.set(policy, mode);
        }
    }
    let defaults = FraudGuard::default();
    let pumping_defaults = PumpingPolicy::default();
    let ip_defaults = IpVelocity::default();
    let limit = |max: &'static str, window: &'static str, default: SendLimit| {
        Ok::<_, ConfigError>(SendLimit {
            max: env.positive(max, default.max)?,
            window: env.seconds(window, default.window.num_seconds(), 30 * DAY_SECONDS)?,
        })
    };
    Ok(FraudConfig {
        guard: FraudGuard {
            policies,
            country_surge: PumpingPolicy {
                surge_multiple: env
                    .positive("PUMPING_SURGE_MULTIPLE", pumping_defaults.surge_multiple)?,
                min_sends: env.positive("PUMPING_MIN_SENDS", pumping_defaults.min_sends)?,
                // Not read by the guard: the policy's mode says what a surge does.
                ..pumping_defaults
            },
            block_period: env
                .parse_with("FRAUD_BLOCK_HOURS", |text| {
                    text.parse::<BlockPeriod>()
                        .map_err(|_| "expected a whole number of hours from 1 to 720".to_owned())
                })?
                .unwrap_or(defaults.block_period),
            deny_line_types: env
                .parse_with("DENY_LINE_TYPES", |text| {
                    if text.eq_ignore_ascii_case("none") {
                        return Ok(DenyLineTypes::none());
                    }
                    text.parse::<DenyLineTypes>()
                        .map_err(|error| error.to_string())
                })?
                .unwrap_or(defaults.deny_line_types.clone()),
            ..defaults
        },
        budgets: budgets(env)?,
        ip_velocity: IpVelocity {
            per_address: limit(
                "FRAUD_IP_MAX_CODES",
                "FRAUD_IP_WINDOW_SECONDS",
                ip_defaults.per_address,
            )?,
            per_range: limit(
                "FRAUD_IP_RANGE_MAX_CODES",
                "FRAUD_IP_RANGE_WINDOW_SECONDS",
                ip_defaults.per_range,
            )?,
        },
    })
}

/// The daily budgets (`BUDGET_*`) and the prices they are estimated with (`SMS_PRICES`).
fn budgets(env: &Env<'_>) -> Result<BudgetConfig, ConfigError> {
    let per_country = |name: &'static str| {
        env.parse_with(name, |text| {
            text.parse::<PerCountry>()
                .map_err(|_| "expected COUNTRY:amount pairs separated by commas, a two-letter country or `*` for the rest, each once, e.g. `GB:5,NG:1,*:20`".to_owned())
        })
    };
    let money = |name: &'static str| {
        env.parse_with(name, |text| match text.parse::<Amount>() {
            Ok(amount) if amount > Amount::ZERO => Ok(amount),
            _ => Err(format!(
                "expected a positive amount with at most 8 decimals, e.g. `250.00`, got `{text}`"
            )),
        })
    };
    let currency = env
        .parse_with("BUDGET_CURRENCY", |text| {
            if text.len() == 3 && text.bytes().all(|byte| byte.is_ascii_alphabetic()) {
                Ok(text.to_ascii_uppercase())
            } else {
                Err(format!(
                    "expected a three-letter ISO 4217 code such as USD, got `{text}`"
                ))
            }
        })?
        .unwrap_or_else(|| "USD".to_owned());
    let budgets = Budgets {
        currency,
        daily_total: money("BUDGET_DAILY_TOTAL")?,
        daily_per_api_key: money("BUDGET_DAILY_PER_API_KEY")?,
        daily_per_country: per_country("BUDGET_DAILY_PER_COUNTRY")?.unwrap_or_default(),
    };
    let prices = per_country("SMS_PRICES")?.unwrap_or_default();
    if budgets.any() && prices.get("*").is_none() {
        return Err(ConfigError::new(
            "SMS_PRICES",
            "a budget is set, so every country needs a fallback price per segment: add `*:<price>`, e.g. `US:0.0079,*:0.05`",
        ));
    }
    Ok(BudgetConfig { budgets, prices })
}

/// `API_KEYS` (clients) and `ADMIN_API_KEYS`; with neither, one generated admin key, and `true`
/// to say so.
fn api_keys(env: &Env<'_>) -> Result<(ApiKeys, bool), ConfigError> {
    let clients = env
        .get("API_KEYS")
        .map(|text| ApiKeys::parse(&text))
        .transpose()
        .map_err(|problem| ConfigError::new("API_KEYS", problem))?;
    let Some(admins) = env.get("ADMIN_API_KEYS") else {
        return Ok(clients.map_or_else(|| (ApiKeys::generate(), true), |keys| (keys, false)));
    };
    clients
        .unwrap_or_default()
        .add_admins(&admins)
        .map(|keys| (keys, false))
        .map_err(|problem| ConfigError::new("ADMIN_API_KEYS", problem))
}

/// The path Twilio posts delivery statuses to, below `PUBLIC_BASE_URL`.
pub const STATUS_CALLBACK_PATH: &str = "/v1/webhooks/twilio/status";

fn twilio_config(
    env: &Env<'_>,
    public_base_url: Option<&Url>,
) -> Result<Option<TwilioConfig>, ConfigError> {
    let Some(account_sid) = env.get("TWILIO_ACCOUNT_SID") else {
        for dependent in [
            "TWILIO_AUTH_TOKEN",
            "TWILIO_API_KEY_SID",
            "TWILIO_PHONE_NUMBER",
            "TWILIO_MESSAGING_SERVICE_SID",
            "TWILIO_VOICE_FROM",
            "TWILIO_WHATSAPP_FROM",
        ] {
            if env.get(dependent).is_some() {
                return Err(ConfigError::new(
                    "TWILIO_ACCOUNT_SID",
                    format!("required when {dependent} is set"),
                ));
            }
        }
        return Ok(None);
    };
    let credentials = match (
        env.get("TWILIO_AUTH_TOKEN"),
        env.get("TWILIO_API_KEY_SID"),
        env.get("TWILIO_API_KEY_SECRET"),
    ) {
        // With an API key, an auth token only checks status-callback signatures.
        (_, Some(sid), Some(secret)) => TwilioCredentials::ApiKey {
            sid,
            secret: SecretString::from(secret),
        },
        (Some(token), None, None) => TwilioCredentials::AuthToken(SecretString::from(token)),
        (_, Some(_), None) => {
            return Err(ConfigError::new(
                "TWILIO_API_KEY_SECRET",
                "required with TWILIO_API_KEY_SID",
            ))
        }
        (_, None, Some(_)) => {
            return Err(ConfigError::new(
                "TWILIO_API_KEY_SID",
                "required with TWILIO_API_KEY_SECRET",
            ))
        }
        (None, None, None) => return Err(ConfigError::new(
            "TWILIO_AUTH_TOKEN",
            "required with TWILIO_ACCOUNT_SID (or TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET)",
        )),
    };
    let sender = match (
        env.get("TWILIO_PHONE_NUMBER"),
        env.get("TWILIO_MESSAGING_SERVICE_SID"),
    ) {
        (Some(number), None) => TwilioSender::From(
            PhoneNumber::parse(&number)
                .map_err(|error| ConfigError::new("TWILIO_PHONE_NUMBER", error.to_string()))?,
        ),
        (None, Some(sid)) => TwilioSender::MessagingService(sid),
        (None, None) => {
            return Err(ConfigError::new(
                "TWILIO_PHONE_NUMBER",
                "required with TWILIO_ACCOUNT_SID (or TWILIO_MESSAGING_SERVICE_SID)",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "TWILIO_MESSAGING_SERVICE_SID",
                "set either TWILIO_PHONE_NUMBER or TWILIO_MESSAGING_SERVICE_SID, not both",
            ))
        }
    };
    let base_url_text = env
        .get("TWILIO_API_BASE_URL")
        .unwrap_or_else(|| TwilioConfig::DEFAULT_BASE_URL.to_owned());
    let base_url = Url::parse(base_url_text.trim())
        .map_err(|error| ConfigError::new("TWILIO_API_BASE_URL", format!("not a URL ({error})")))?;
    let status_callback_url = public_base_url.map(status_callback_url);
    // Checked as the sending number is: a typo must stop startup, not every call.
    let number = |variable: &'static str| {
        env.parse_with(variable, |text| {
            PhoneNumber::parse(text).map_err(|error| error.to_string())
        })
    };
    let config = TwilioConfig {
        base_url,
        account_sid,
        credentials,
        sender,
        voice_from: number("TWILIO_VOICE_FROM")?,
        whatsapp_from: number("TWILIO_WHATSAPP_FROM")?,
        status_callback_url,
        connect_timeout: Duration::from_millis(env.up_to(
            "TWILIO_CONNECT_TIMEOUT_MS",
            3_000,
            TIMEOUT_MS,
        )?),
        request_timeout: Duration::from_millis(env.up_to(
            "TWILIO_REQUEST_TIMEOUT_MS",
            10_000,
            TIMEOUT_MS,
        )?),
    };
    // What the adapter would refuse at start, refused here naming the variable.
    config.check().map_err(|error| {
        let variable = match error {
            TwilioConfigError::InvalidAccountSid => "TWILIO_ACCOUNT_SID",
            TwilioConfigError::InvalidMessagingServiceSid => "TWILIO_MESSAGING_SERVICE_SID",
            TwilioConfigError::InvalidApiKeySid => "TWILIO_API_KEY_SID",
            TwilioConfigError::InvalidBaseUrl(_) | TwilioConfigError::HttpClient(_) => {
                "TWILIO_API_BASE_URL"
            }
        };
        ConfigError::new(variable, error.to_string())
    })?;
    Ok(Some(config))
}

/// `host:port` to listen on: an IP address, `localhost` (the IPv4 loopback, as the default
/// binds), or a host name, resolved now, its IPv4 address preferred.
fn listen_address(text: &str, example: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let expected = || format!("expected host:port, such as {example}");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    if host.is_empty() {
        return Err(expected());
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|error| format!("cannot resolve `{host}` ({error})"))?
        .min_by_key(SocketAddr::is_ipv6)
        .ok_or_else(|| format!("`{host}` has no address"))
}

/// [`STATUS_CALLBACK_PATH`] below `base`, its path kept: behind a proxy that serves this
/// service at `https://host/sms`, Twilio must post to (and sign) `https://host/sms/v1/...`.
fn status_callback_url(base: &Url) -> Url {
    let mut url = base.clone();
    let path = format!(
        "{}{STATUS_CALLBACK_PATH}",
        base.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

fn vonage_config(env: &Env<'_>) -> Result<Option<VonageConfig>, ConfigError> {
    let Some(api_key) = env.get("VONAGE_API_KEY") else {
        for dependent in ["VONAGE_API_SECRET", "VONAGE_FROM"] {
            if env.get(dependent).is_some() {
                return Err(ConfigError::new(
                    "VONAGE_API_KEY",
                    format!("required when {dependent} is set"),
                ));
            }
        }
        return Ok(None);
    };
    let required = |name: &'static str| {
        env.get(name)
            .ok_or_else(|| ConfigError::new(name, "required with VONAGE_API_KEY"))
    };
    let api_secret = SecretString::from(required("VONAGE_API_SECRET")?);
    let from = required("VONAGE_FROM")?.trim().to_owned();
    let base_url = env
        .parse_with("VONAGE_API_BASE_URL", |text| {
            Url::parse(text).map_err(|error| format!("not a URL ({error})"))
        })?
        .map_or_else(|| Url::parse(VonageConfig::DEFAULT_BASE_URL), Ok)
        .map_err(|error| ConfigError::new("VONAGE_API_BASE_URL", error.to_string()))?;
    Ok(Some(VonageConfig {
        base_url,
        api_key: api_key.trim().to_owned(),
        api_secret,
        from,
        connect_timeout: Duration::from_millis(env.up_to(
            "VONAGE_CONNECT_TIMEOUT_MS",
            3_000,
            TIMEOUT_MS,
        )?),
        request_timeout: Duration::from_millis(env.up_to(
            "VONAGE_REQUEST_TIMEOUT_MS",
            10_000,
            TIMEOUT_MS,
        )?),
    }))
}

/// `SMS_PROVIDERS` (`twilio,vonage`: the order is the priority), each of them configured, or
/// `console` alone; when absent, every configured provider, Twilio first. With none: the
/// console for the embedded database; for a deployment (`deployment`: PostgreSQL, with what
/// the configuration is read for), a refusal when it is to send.
fn providers(
    env: &Env<'_>,
    twilio: Option<TwilioConfig>,
    vonage: Option<VonageConfig>,
    deployment: Option<Sending>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let twilio = twilio.map(|config| ProviderConfig::Twilio(Box::new(config)));
    let vonage = vonage.map(|config| ProviderConfig::Vonage(Box::new(config)));
    let Some(names) = env.get("SMS_PROVIDERS") else {
        let configured: Vec<_> = twilio.into_iter().chain(vonage).collect();
        return match deployment {
            _ if !configured.is_empty() => Ok(configured),
            None => Ok(vec![ProviderConfig::Console]),
            Some(Sending::NotNeeded) => Ok(vec![ProviderConfig::Missing]),
            Some(Sending::Required) => Err(ConfigError::new(
                "TWILIO_ACCOUNT_SID",
                "required with a PostgreSQL DATABASE_URL (or VONAGE_API_KEY), unless SMS_PROVIDERS=console \
                 asks to print SMS, codes included, to the log instead of sending them",
            )),
        };
    };
    if names.trim().eq_ignore_ascii_case("console") {
        return Ok(vec![ProviderConfig::Console]);
    }
    let mut providers = Vec::new();
    for name in names
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let provider = match name.to_ascii_lowercase().as_str() {
            "twilio" => twilio.clone().ok_or_else(|| {
                ConfigError::new("TWILIO_ACCOUNT_SID", "required: SMS_PROVIDERS names twilio")
            })?,
            "vonage" => vonage.clone().ok_or_else(|| {
                ConfigError::new("VONAGE_API_KEY", "required: SMS_PROVIDERS names vonage")
            })?,
            "console" => {
                return Err(ConfigError::new(
                    "SMS_PROVIDERS",
                    "console stands alone: it cannot fail over to or from a provider",
                ))
            }
            other => {
                return Err(ConfigError::new(
                    "SMS_PROVIDERS",
                    format!("unknown provider `{other}`; expected twilio, vonage or console"),
                ))
            }
        };
        if providers
            .iter()
            .any(|named: &ProviderConfig| named.name() == provider.name())
        {
            return Err(ConfigError::new(
                "SMS_PROVIDERS",
                format!("names {} twice", provider.name()),
            ));
        }
        providers.push(provider);
    }
    if providers.is_empty() {
        return Err(ConfigError::new(
            "SMS_PROVIDERS",
            "expected provider names, such as twilio,vonage",
        ));
    }
    Ok(providers)
}

/// The `ENVIRONMENT` values that name a deployment where `TEST_NUMBERS` may work. A list of
/// what is allowed, not of what is refused: `prd`, `live` or `production-eu` must not pass for
/// a test environment.
pub const NON_PRODUCTION_ENVIRONMENTS: [&str; 9] = [
    "development",
    "dev",
    "local",
    "test",
    "testing",
    "ci",
    "staging",
    "sandbox",
    "qa",
];

/// `TEST_NUMBERS` bypass the provider and the random code, so they are refused unless
/// `ENVIRONMENT` says, explicitly, that this is not production: a forgotten variable must not
/// open a way around two-factor authentication.
/// Where traces go: the OpenTelemetry SDK's own variables, read as its specification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TracesConfig {
    /// No endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: nothing exported.
    Off,
    /// OTLP over HTTP with protobuf bodies. The exporter reads `OTEL_EXPORTER_OTLP_HEADERS`
    /// and the timeouts itself, so that the headers (credentials, often) are held nowhere here.
    Otlp {
        /// The traces' URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or
        /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `v1/traces` added to its path.
        endpoint: Url,
        /// The service's name when the operator names none (`OTEL_SERVICE_NAME`, or
        /// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, which the SDK reads itself).
        default_service_name: bool,
    },
}

fn traces(env: &Env<'_>) -> Result<TracesConfig, ConfigError> {
    let disabled = match env
        .get("OTEL_SDK_DISABLED")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => false,
        Some(value) if value == "false" => false,
        Some(value) if value == "true" => true,
        Some(_) => {
            return Err(ConfigError::new(
                "OTEL_SDK_DISABLED",
                "expected true or false",
            ))
        }
    };
    let exporting = match env.get("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => true,
        Some("none") => false,
        Some(other) => {
            return Err(ConfigError::new(
                "OTEL_TRACES_EXPORTER",
                format!("expected otlp or none, got `{other}`"),
            ))
        }
    };
    if disabled || !exporting {
        return Ok(TracesConfig::Off);
    }
    // Refused even without an endpoint: the operator asked for a protocol this service does
    // not speak, and would otherwise see no traces and no reason.
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = env.get(name) {
            if protocol.trim() != "http/protobuf" {
                return Err(ConfigError::new(
                    name,
                    format!("only http/protobuf is supported, got `{}`", protocol.trim()),
                ));
            }
        }
    }
    let endpoint = match (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => otlp_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)?,
        (None, Some(base)) => {
            let mut url = otlp_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url
        }
        (None, None) => return Ok(TracesConfig::Off),
    };
    let names_service = env.get("OTEL_SERVICE_NAME").is_some()
        || env
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|attributes| {
                attributes
                    .split(',')
                    .any(|pair| pair.trim_start().starts_with("service.name="))
            });
    Ok(TracesConfig::Otlp {
        endpoint,
        default_service_name: !names_service,
    })
}

fn otlp_url(name: &'static str, text: &str) -> Result<Url, ConfigError> {
    match Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err(ConfigError::new(
            name,
            "expected an http:// or https:// URL such as http://localhost:4318",
        )),
    }
}

fn test_numbers(env: &Env<'_>) -> Result<TestNumbers, ConfigError> {
    let Some(text) = env.get("TEST_NUMBERS") else {
        return Ok(TestNumbers::default());
    };
    let environment = env
        .get("ENVIRONMENT")
        .map(|value| value.trim().to_ascii_lowercase());
    if !environment
        .as_deref()
        .is_some_and(|name| NON_PRODUCTION_ENVIRONMENTS.contains(&name))
    {
        return Err(ConfigError::new(
            "TEST_NUMBERS",
            format!(
                "refused unless ENVIRONMENT is one of {}",
                NON_PRODUCTION_ENVIRONMENTS.join(", ")
            ),
        ));
    }
    TestNumbers::parse(&text).map_err(|problem| ConfigError::new("TEST_NUMBERS", problem))
}

/// What the status-callback route needs to tell Twilio's posts from forgeries.
#[derive(Debug, Clone)]
pub struct TwilioStatusCallbacks {
    /// The `StatusCallback` URL sent with every message: what Twilio signs.
    pub url: Url,
    /// Twilio signs with the account's auth token, even when messages are sent with an API key.
    pub auth_token: SecretString,
}

fn twilio_status_callbacks(
    env: &Env<'_>,
    providers: &[ProviderConfig],
) -> Result<Option<TwilioStatusCallbacks>, ConfigError> {
    let Some(twilio) = providers.iter().find_map(|provider| match provider {
        ProviderConfig::Twilio(twilio) => Some(twilio),
        _ => None,
    }) else {
        return Ok(None);
    };
    let Some(url) = &twilio.status_callback_url else {
        return Ok(None);
    };
    let auth_token = env.get("TWILIO_AUTH_TOKEN").ok_or_else(|| {
        ConfigError::new(
            "TWILIO_AUTH_TOKEN",
            "required with PUBLIC_BASE_URL, also with an API key: Twilio signs status callbacks with the auth token",
        )
    })?;
    Ok(Some(TwilioStatusCallbacks {
        url: url.clone(),
        auth_token: SecretString::from(auth_token),
    }))
}

/// The longest retention accepted: a hundred years is "kept", a larger figure is a typo.
const MAX_RETENTION_DAYS: i64 = 36_500;

/// `RETENTION_DAYS` and `MESSAGE_BODY_RETENTION_HOURS`: a body is never kept longer than the
/// message it belongs to, since retention removes both then.
fn retention(env: &Env<'_>) -> Result<RetentionConfig, ConfigError> {
    let defaults = RetentionConfig::default();
    let days = env.up_to(
        "RETENTION_DAYS",
        defaults.retention.num_days(),
        MAX_RETENTION_DAYS,
    )?;
    let hours = match env.number::<i64>("MESSAGE_BODY_RETENTION_HOURS")? {
        None => defaults.body_retention.num_hours().min(days * 24),
        Some(hours) if hours < 0 => {
            return Err(ConfigError::new(
                "MESSAGE_BODY_RETENTION_HOURS",
                "must be 0 or more",
            ))
        }
        Some(hours) if hours > days * 24 => {
            return Err(ConfigError::new(
                "MESSAGE_BODY_RETENTION_HOURS",
                format!(
                    "must be at most RETENTION_DAYS in hours ({}): a body goes with its message",
                    days * 24
                ),
            ))
        }
        Some(hours) => hours,
    };
    Ok(RetentionConfig {
        retention: TimeDelta::days(days),
        body_retention: TimeDelta::hours(hours),
        ..defaults
    })
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn parse_with<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|text| parse(text.trim()).map_err(|problem| ConfigError::new(name, problem)))
            .transpose()
    }

    fn number<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError> {
        self.parse_with(name, |text| {
            text.parse::<T>()
                .map_err(|_| format!("expected a whole number, got `{text}`"))
        })
    }

    fn positive<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + Default,
    {
        match self.number::<T>(name)? {
            Some(value) if value <= T::default() => {
                Err(ConfigError::new(name, "must be greater than zero"))
            }
            Some(value) => Ok(value),
            None => Ok(default),
        }
    }

    fn seconds(
        &self,
        name: &'static str,
        default: i64,
        max: i64,
    ) -> Result<TimeDelta, ConfigError> {
        Ok(TimeDelta::seconds(self.up_to(name, default, max)?))
    }

    /// A positive whole number of `name`'s unit (`_SECONDS`, `_MS`) up to `max`: a larger
    /// duration is a mistake (a unit confused, digits too many), and would overflow the date
    /// arithmetic it takes part in.
    fn up_to<T>(&self, name: &'static str, default: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + Default + std::fmt::Display,
    {
        match self.positive(name, default)? {
            value if value > max => Err(ConfigError::new(name, format!("must be at most {max}"))),
            value => Ok(value),
        }
    }
}

impl DatabaseConfig {
    /// `DATABASE_URL` alone, for commands that need nothing else (the CLI's `migrate`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_url(
            std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
        )
    }

    fn from_url(url: Option<String>) -> Result<Self, ConfigError> {
        Ok(match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                // The parser's words only: they never repeat the URL, whose password is secret.
                if let Err(error) = Url::parse(&url) {
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        format!("not a URL ({error})"),
                    ));
                }
                DatabaseConfig::Postgres {
                    url: SecretString::from(url),
                    pool_size: DEFAULT_POOL_SIZE,
                }
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => DatabaseConfig::Sqlite { path: path.into() },
                None => {
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        "expected a postgres:// or sqlite:// URL",
                    ))
                }
            },
            None => DatabaseConfig::Sqlite {
                path: PathBuf::from("data/sms-notify.sqlite"),
            },
        })
    }

    /// `DATABASE_POOL_SIZE` when set, checked: PostgreSQL's only, within
    /// [`MIN_POOL_SIZE`]..=[`MAX_POOL_SIZE`].
    fn with_pool_size(self, size: Option<u32>) -> Result<Self, ConfigError> {
        let refused = |problem: &str| Err(ConfigError::new("DATABASE_POOL_SIZE", problem));
        match (self, size) {
            (database, None) => Ok(database),
            (DatabaseConfig::Sqlite { .. }, Some(_)) => {
                refused("applies only to a PostgreSQL DATABASE_URL")
            }
            (_, Some(size)) if !(MIN_POOL_SIZE..=MAX_POOL_SIZE).contains(&size) => refused(
                &format!("must be between {MIN_POOL_SIZE} (the LISTEN connection, the hot paths and the other queries need one each) and {MAX_POOL_SIZE}"),
            ),
            (DatabaseConfig::Postgres { url, .. }, Some(pool_size)) => {
                Ok(DatabaseConfig::Postgres { url, pool_size })
            }
        }
    }

    /// The most connections the pool opens; `None` for SQLite, which has no server to share.
    pub fn pool_size(&self) -> Option<u32> {
        match self {
            DatabaseConfig::Postgres { pool_size, .. } => Some(*pool_size),
            DatabaseConfig::Sqlite { .. } => None,
        }
    }

    /// For an error that names the database: the URL as configured without its password
    /// (PostgreSQL), so that the operator sees which server, port, user and database were
    /// meant, or the file (SQLite).
    pub fn location(&self) -> String {
        match self {
            DatabaseConfig::Postgres { url, .. } => match Url::parse(url.expose_secret()) {
                Ok(mut url) => {
                    let _ = url.set_password(None);
                    // sqlx also reads a password from the query string.
                    let query: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(name, _)| name != "password")
                        .map(|(name, value)| (name.into_owned(), value.into_owned()))
                        .collect();
                    url.set_query(None);
                    if !query.is_empty() {
                        url.query_pairs_mut().extend_pairs(query);
                    }
                    url.into()
                }
                Err(_) => "(DATABASE_URL, not a URL)".to_owned(),
            },
            DatabaseConfig::Sqlite { path } => path.display().to_string(),
        }
    }

    /// For log lines: where the data lives, without credentials.
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Postgres { url, .. } => match Url::parse(url.expose_secret()) {
                Ok(url) => format!(
                    "PostgreSQL at {}:{}{}",
                    url.host_str().unwrap_or("localhost"),
                    url.port().unwrap_or(5432),
                    url.path()
                ),
                Err(_) => "PostgreSQL".to_owned(),
            },
            DatabaseConfig::Sqlite { path } => format!("SQLite at {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const TWILIO: &[(&str, &str)] = &[
        ("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_PHONE_NUMBER", "+15005550006"),
    ];

    #[test]
    fn traces_are_off_without_an_endpoint_and_refuse_a_protocol_other_than_http_protobuf() {
        let traces = |pairs: &[(&str, &str)]| config(pairs).map(|config| config.traces);
        assert_eq!(traces(&[]).unwrap(), TracesConfig::Off);
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/");
        assert_eq!(
            traces(&[base]).unwrap(),
            TracesConfig::Otlp {
                endpoint: Url::parse("http://collector:4318/v1/traces").unwrap(),
                default_service_name: true,
            }
        );
        assert_eq!(
            traces(&[
                base,
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://traces.example/in"
                ),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=notify"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ])
            .unwrap(),
            TracesConfig::Otlp {
                endpoint: Url::parse("https://traces.example/in").unwrap(),
                default_service_name: false,
            }
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(traces(&[base, off]).unwrap(), TracesConfig::Off, "{off:?}");
        }
        let refused = |pairs: &[(&str, &str)]| traces(pairs).unwrap_err().to_string();
        assert_eq!(
            refused(&[base, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, got `grpc`"
        );
        assert_eq!(
            refused(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")]),
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: only http/protobuf is supported, got `http/json`"
        );
        assert_eq!(
            refused(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
            "OTEL_EXPORTER_OTLP_ENDPOINT: expected an http:// or https:// URL such as \
             http://localhost:4318"
        );
        assert_eq!(
            refused(&[base, ("OTEL_TRACES_EXPORTER", "zipkin")]),
            "OTEL_TRACES_EXPORTER: expected otlp or none, got `zipkin`"
        );
    }

    #[test]
    fn retention_defaults_to_90_days_and_72_hours_of_bodies_and_refuses_a_body_kept_longer() {
        let defaults = config(&[]).unwrap().retention;
        assert_eq!(defaults.retention, TimeDelta::days(90));
        assert_eq!(defaults.body_retention, TimeDelta::hours(72));
        let set = config(&[
            ("RETENTION_DAYS", "30"),
            ("MESSAGE_BODY_RETENTION_HOURS", "0"),
        ])
        .unwrap()
        .retention;
        assert_eq!(set.retention, TimeDelta::days(30));
        assert_eq!(set.body_retention, TimeDelta::zero());
        assert_eq!(
            config(&[("RETENTION_DAYS", "1")])
                .unwrap()
                .retention
                .body_retention,
            TimeDelta::hours(24),
            "the default body retention never outlives the message"
        );
        let refused = |pairs: &[(&str, &str)]| config(pairs).unwrap_err().to_string();
        assert_eq!(
            refused(&[
                ("RETENTION_DAYS", "1"),
                ("MESSAGE_BODY_RETENTION_HOURS", "25")
            ]),
            "MESSAGE_BODY_RETENTION_HOURS: must be at most RETENTION_DAYS in hours (24): a body \
             goes with its message"
        );
        assert_eq!(
            refused(&[("RETENTION_DAYS", "0")]),
            "RETENTION_DAYS: must be greater than zero"
        );
        assert_eq!(
            refused(&[("RETENTION_DAYS", "36501")]),
            "RETENTION_DAYS: must be at most 36500"
        );
        assert_eq!(
            refused(&[("MESSAGE_BODY_RETENTION_HOURS", "-1")]),
            "MESSAGE_BODY_RETENTION_HOURS: must be 0 or more"
        );
        assert_eq!(
            refused(&[("RETENTION_DAYS", "ninety")]),
            "RETENTION_DAYS: expected a whole number, got `ninety`"
        );
    }

    #[test]
    fn no_configuration_means_sqlite_console_and_a_generated_key() {
        let config = config(&[]).unwrap();
        assert!(matches!(config.database, DatabaseConfig::Sqlite { .. }));
        assert!(matches!(config.providers[..], [ProviderConfig::Console]));
        assert!(config.test_numbers.is_empty());
        assert!(config.api_keys_generated);
        let key = config.api_keys.first_key().unwrap().expose_secret();
        assert!(config.api_keys.authenticate(key).unwrap().is_admin());
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.dispatch.retry, RetryPolicy::default());
        assert_eq!(config.dispatch.sender_mps, None);
        assert_eq!(config.dispatch.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.verification, VerificationPolicy::default());
        assert_eq!(config.guards, GuardConfig::default());
        assert_eq!(config.fraud, FraudConfig::default());
    }

    #[test]
    fn budgets_are_read_in_one_currency_and_unset_ones_cap_nothing() {
        let read = config(&[
            ("BUDGET_CURRENCY", "eur"),
            ("BUDGET_DAILY_TOTAL", "250"),
            ("BUDGET_DAILY_PER_COUNTRY", "GB:5,NG:1,*:20"),
            ("SMS_PRICES", "US:0.0079,*:0.05"),
        ])
        .unwrap();
        let budgets = &read.fraud.budgets;
        assert_eq!(budgets.budgets.currency, "EUR");
        assert_eq!(budgets.budgets.daily_total, "250".parse().ok());
        assert_eq!(budgets.budgets.daily_per_api_key, None);
        assert_eq!(
            budgets.budgets.daily_per_country.get("NG"),
            "1".parse().ok()
        );
        assert_eq!(
            budgets.budgets.daily_per_country.get("FR"),
            "20".parse().ok()
        );
        assert_eq!(budgets.prices.get("US"), "0.0079".parse().ok());
        assert!(!config(&[]).unwrap().fraud.budgets.budgets.any());
    }

    #[test]
    fn fraud_mode_sets_every_policy_and_each_policys_own_variable_wins() {
        let read = config(&[
            ("FRAUD_MODE", "Monitor"),
            ("FRAUD_POLICY_LINE_TYPE", "enforce"),
            ("FRAUD_POLICY_IP_VELOCITY", "off"),
            ("FRAUD_BLOCK_HOURS", "24"),
            ("DENY_LINE_TYPES", "premium_rate, voip"),
            ("FRAUD_IP_MAX_CODES", "5"),
        ])
        .unwrap();
        let policies = read.fraud.guard.policies;
        assert_eq!(policies.mode(Policy::PrefixConversion), Mode::Monitor);
        assert_eq!(policies.mode(Policy::LineType), Mode::Enforce);
        assert_eq!(policies.mode(Policy::IpVelocity), Mode::Off);
        assert_eq!(
            read.fraud.guard.block_period.duration(),
            TimeDelta::hours(24)
        );
        assert_eq!(
            read.fraud.guard.deny_line_types.to_string(),
            "premium_rate,voip"
        );
        assert_eq!(read.fraud.ip_velocity.per_address.max, 5);
        assert_eq!(
            config(&[("DENY_LINE_TYPES", "none")])
                .unwrap()
                .fraud
                .guard
                .deny_line_types,
            DenyLineTypes::none()
        );
    }

    #[test]
    fn the_pumping_alarms_variables_are_the_country_surge_policys_settings() {
        let country_surge = |pairs: &[(&str, &str)]| {
            config(pairs)
                .unwrap()
                .fraud
                .guard
                .policies
                .mode(Policy::CountrySurge)
        };
        assert_eq!(country_surge(&[]), Mode::Enforce);
        // The alarm alone, as before: the code goes, the finding is recorded.
        assert_eq!(country_surge(&[("PUMPING_REFUSE", "false")]), Mode::Monitor);
        assert_eq!(
            country_surge(&[("FRAUD_MODE", "off"), ("PUMPING_REFUSE", "true")]),
            Mode::Enforce
        );
        assert_eq!(
            country_surge(&[
                ("PUMPING_REFUSE", "true"),
                ("FRAUD_POLICY_COUNTRY_SURGE", "off")
            ]),
            Mode::Off
        );
        let surge = config(&[("PUMPING_SURGE_MULTIPLE", "3"), ("PUMPING_MIN_SENDS", "50")])
            .unwrap()
            .fraud
            .guard
            .country_surge;
        assert_eq!((surge.surge_multiple, surge.min_sends), (3, 50));
    }

    #[test]
    fn bind_addr_takes_localhost_as_the_loopback_address() {
        let config = config(&[
            ("BIND_ADDR", "localhost:8080"),
            ("METRICS_BIND_ADDR", "LOCALHOST:9090"),
        ])
        .unwrap();
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.metrics_bind_addr.unwrap().to_string(),
            "127.0.0.1:9090"
        );
        let ipv6 = self::config(&[("BIND_ADDR", "[::1]:8080")]).unwrap();
        assert_eq!(ipv6.bind_addr.to_string(), "[::1]:8080");
    }

    #[test]
    fn twilio_credentials_select_the_twilio_provider() {
        let config = config(TWILIO).unwrap();
        let [ProviderConfig::Twilio(twilio)] = &config.providers[..] else {
            panic!("expected Twilio");
        };
        assert_eq!(twilio.base_url.as_str(), "https://api.twilio.com/");
        assert!(twilio.status_callback_url.is_none());
    }

    #[test]
    fn public_base_url_becomes_the_status_callback() {
        let mut pairs = TWILIO.to_vec();
        pairs.push(("PUBLIC_BASE_URL", "https://sms.example.com"));
        let config = config(&pairs).unwrap();
        let [ProviderConfig::Twilio(twilio)] = &config.providers[..] else {
            panic!("expected Twilio");
        };
        assert_eq!(
            twilio.status_callback_url.as_ref().unwrap().as_str(),
            "https://sms.example.com/v1/webhooks/twilio/status"
        );
    }

    #[test]
    fn public_base_url_keeps_its_path_in_the_status_callback() {
        for base in [
            "https://host/sms",
            "https://host/sms/",
            "https://host/sms?x=1#top",
        ] {
            let mut pairs = TWILIO.to_vec();
            pairs.push(("PUBLIC_BASE_URL", base));
            let callbacks = config(&pairs).unwrap().twilio_status_callbacks.unwrap();
            assert_eq!(
                callbacks.url.as_str(),
                "https://host/sms/v1/webhooks/twilio/status",
                "{base}"
            );
        }
    }

    const TWILIO_API_KEY: &[(&str, &str)] = &[
        ("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000"),
        ("TWILIO_API_KEY_SID", "SK00000000000000000000000000000000"),
        ("TWILIO_API_KEY_SECRET", "secret"),
        ("TWILIO_PHONE_NUMBER", "+15005550006"),
        ("PUBLIC_BASE_URL", "https://sms.example.com"),
    ];

    #[test]
    fn status_callbacks_are_checked_with_the_auth_token() {
        let mut pairs = TWILIO.to_vec();
        pairs.push(("PUBLIC_BASE_URL", "https://sms.example.com"));
        let callbacks = config(&pairs).unwrap().twilio_status_callbacks.unwrap();
        assert_eq!(
            callbacks.url.as_str(),
            "https://sms.example.com/v1/webhooks/twilio/status"
        );
        assert_eq!(callbacks.auth_token.expose_secret(), "token");
        assert!(config(TWILIO).unwrap().twilio_status_callbacks.is_none());
    }

    #[test]
    fn an_api_key_with_public_base_url_also_needs_the_auth_token_for_callbacks() {
        let error = config(TWILIO_API_KEY).unwrap_err();
        assert_eq!(error.variable, "TWILIO_AUTH_TOKEN");
        assert!(error.problem.contains("status callbacks"), "{error}");

        let mut pairs = TWILIO_API_KEY.to_vec();
        pairs.push(("TWILIO_AUTH_TOKEN", "token"));
        let config = config(&pairs).unwrap();
        let [ProviderConfig::Twilio(twilio)] = &config.providers[..] else {
            panic!("expected Twilio");
        };
        assert!(matches!(
            twilio.credentials,
            TwilioCredentials::ApiKey { .. }
        ));
        assert_eq!(
            config
                .twilio_status_callbacks
                .unwrap()
                .auth_token
                .expose_secret(),
            "token"
        );
    }

    #[test]
    fn the_voice_and_whatsapp_senders_and_templates_are_read_with_twilio() {
        let mut pairs = TWILIO.to_vec();
        pairs.extend([
            ("TWILIO_VOICE_FROM", "+15005550009"),
            ("TWILIO_WHATSAPP_FROM", "+15005550010"),
            (
                "TWILIO_WHATSAPP_CONTENT_SIDS",
                "en:HX0123456789abcdef0123456789abcdef, fr:HXfedcba9876543210fedcba9876543210",
            ),
        ]);
        let read = config(&pairs).unwrap();
        let [ProviderConfig::Twilio(twilio)] = &read.providers[..] else {
            panic!("expected Twilio");
        };
        assert_eq!(twilio.voice_from.as_ref().unwrap().as_str(), "+15005550009");
        assert_eq!(
            twilio.whatsapp_from.as_ref().unwrap().as_str(),
            "+15005550010"
        );
        assert_eq!(
            read.whatsapp_templates.resolve(Some("fr-CA")),
            Some(("fr", "HXfedcba9876543210fedcba9876543210"))
        );
        let [ProviderConfig::Twilio(without)] = &config(TWILIO).unwrap().providers[..] else {
            panic!("expected Twilio");
        };
        assert!(without.voice_from.is_none() && without.whatsapp_from.is_none());

        let orphan = config(&[("TWILIO_VOICE_FROM", "+15005550009")]).unwrap_err();
        assert_eq!(orphan.variable, "TWILIO_ACCOUNT_SID");
    }

    const VONAGE: &[(&str, &str)] = &[
        ("VONAGE_API_KEY", "key"),
        ("VONAGE_API_SECRET", "secret"),
        ("VONAGE_FROM", "+15005550007"),
    ];

    fn provider_names(config: &Config) -> Vec<&'static str> {
        config.providers.iter().map(ProviderConfig::name).collect()
    }

    #[test]
    fn sms_providers_sets_the_failover_order() {
        let both: Vec<_> = TWILIO.iter().chain(VONAGE).copied().collect();
        assert_eq!(
            provider_names(&config(&both).unwrap()),
            ["twilio", "vonage"]
        );

        let mut reversed = both.clone();
        reversed.push(("SMS_PROVIDERS", "vonage, twilio"));
        let config = config(&reversed).unwrap();
        assert_eq!(provider_names(&config), ["vonage", "twilio"]);
        // The first provider's sender is the one SENDER_MPS paces.
        assert_eq!(config.sender(), "+15005550007");
        let [ProviderConfig::Vonage(vonage), _] = &config.providers[..] else {
            panic!("expected Vonage first");
        };
        assert_eq!(vonage.base_url.as_str(), "https://rest.nexmo.com/");
    }

    #[test]
    fn a_provider_named_in_sms_providers_must_be_configured() {
        let mut pairs = TWILIO.to_vec();
        pairs.push(("SMS_PROVIDERS", "twilio,vonage"));
        assert_eq!(config(&pairs).unwrap_err().variable, "VONAGE_API_KEY");
        for providers in ["twilio,twilio", "twilio,sinch", " , "] {
            let mut pairs = TWILIO.to_vec();
            pairs.push(("SMS_PROVIDERS", providers));
            assert_eq!(
                config(&pairs).unwrap_err().variable,
                "SMS_PROVIDERS",
                "{providers}"
            );
        }
    }

    #[test]
    fn test_numbers_need_an_environment_named_as_not_production() {
        let numbers = ("TEST_NUMBERS", "+15005550001:123456");
        assert_eq!(config(&[numbers]).unwrap_err().variable, "TEST_NUMBERS");
        for environment in [
            "Production",
            "prod",
            "prd",
            "live",
            "production-eu",
            "stage-ish",
        ] {
            let error = config(&[numbers, ("ENVIRONMENT", environment)]).unwrap_err();
            assert_eq!(error.variable, "TEST_NUMBERS", "{environment}");
            assert!(error.problem.contains("staging, sandbox, qa"), "{error}");
        }
        let number = PhoneNumber::parse("+15005550001").unwrap();
        for environment in NON_PRODUCTION_ENVIRONMENTS.into_iter().chain([" Staging "]) {
            let accepted = config(&[numbers, ("ENVIRONMENT", environment)]).unwrap();
            assert_eq!(
                accepted
                    .test_numbers
                    .code_for(&number)
                    .map(|code| code.expose()),
                Some("123456"),
                "{environment}"
            );
        }
    }

    #[test]
    fn code_texts_default_to_the_brand_and_the_country_s_language_without_autofill() {
        let defaults = config(&[]).unwrap().code_texts;
        assert_eq!(defaults.brand.as_str(), "Smarter Firms");
        assert!(defaults.auto_locale);
        assert_eq!(defaults.app_domain, None);

        let set = config(&[
            ("VERIFY_BRAND", "Acme Bank"),
            ("VERIFY_AUTO_LOCALE", "false"),
            ("VERIFY_APP_DOMAIN", "Example.com"),
        ])
        .unwrap()
        .code_texts;
        assert_eq!(set.brand.as_str(), "Acme Bank");
        assert!(!set.auto_locale);
        assert_eq!(set.app_domain.unwrap().as_str(), "example.com");

        let error = config(&[("VERIFY_BRAND", "Smarter Firms Holdings")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "VERIFY_BRAND: a brand has at most 20 characters, so that a code still fits one SMS"
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("BIND_ADDR", "nowhere")], "BIND_ADDR"),
            (&[("BIND_ADDR", "localhost")], "BIND_ADDR"),
            (&[("BIND_ADDR", ":8080")], "BIND_ADDR"),
            (&[("BIND_ADDR", "localhost:http")], "BIND_ADDR"),
            (
                &[("TEMPLATES_DIR", "/nonexistent/sms-notify-templates")],
                "TEMPLATES_DIR",
            ),
            (&[("METRICS_BIND_ADDR", "9090")], "METRICS_BIND_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (
                &[("DATABASE_URL", "postgres://u:secret@db:port/x")],
                "DATABASE_URL",
            ),
            (&[("API_KEYS", "nokey")], "API_KEYS"),
            (&[("ADMIN_API_KEYS", "ops:short")], "ADMIN_API_KEYS"),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (&[("DISPATCH_CONCURRENCY", "0")], "DISPATCH_CONCURRENCY"),
            (&[("DISPATCH_CONCURRENCY", "many")], "DISPATCH_CONCURRENCY"),
            (&[("SENDER_MPS", "0")], "SENDER_MPS"),
            (&[("SENDER_MPS", "fast")], "SENDER_MPS"),
            (
                &[("SHUTDOWN_GRACE_SECONDS", "-1")],
                "SHUTDOWN_GRACE_SECONDS",
            ),
            (&[("VERIFY_CODE_LENGTH", "12")], "VERIFY_CODE_LENGTH"),
            (
                &[("VERIFY_BRAND", "Smarter Firms Holdings")],
                "VERIFY_BRAND",
            ),
            (&[("VERIFY_AUTO_LOCALE", "no")], "VERIFY_AUTO_LOCALE"),
            (
                &[("VERIFY_APP_DOMAIN", "https://example.com")],
                "VERIFY_APP_DOMAIN",
            ),
            (
                &[("VERIFY_APP_DOMAIN", "login.smarterfirms.com")],
                "VERIFY_APP_DOMAIN",
            ),
            (&[("CODE_PEPPER", "short")], "CODE_PEPPER"),
            (&[("ALLOWED_COUNTRIES", "US,Atlantis")], "ALLOWED_COUNTRIES"),
            (
                &[("VERIFY_SENDS_PER_NUMBER", "0")],
                "VERIFY_SENDS_PER_NUMBER",
            ),
            (&[("PUMPING_REFUSE", "yes")], "PUMPING_REFUSE"),
            (&[("FRAUD_MODE", "loud")], "FRAUD_MODE"),
            (
                &[("FRAUD_POLICY_PREFIX_SURGE", "on")],
                "FRAUD_POLICY_PREFIX_SURGE",
            ),
            (&[("FRAUD_BLOCK_HOURS", "0")], "FRAUD_BLOCK_HOURS"),
            (&[("FRAUD_BLOCK_HOURS", "a day")], "FRAUD_BLOCK_HOURS"),
            (&[("DENY_LINE_TYPES", "premium,pager")], "DENY_LINE_TYPES"),
            (&[("BUDGET_CURRENCY", "dollars")], "BUDGET_CURRENCY"),
            (
                &[("BUDGET_DAILY_TOTAL", "0"), ("SMS_PRICES", "*:0.05")],
                "BUDGET_DAILY_TOTAL",
            ),
            (
                &[
                    ("BUDGET_DAILY_PER_API_KEY", "1e3"),
                    ("SMS_PRICES", "*:0.05"),
                ],
                "BUDGET_DAILY_PER_API_KEY",
            ),
            (
                &[
                    ("BUDGET_DAILY_PER_COUNTRY", "GB=5"),
                    ("SMS_PRICES", "*:0.05"),
                ],
                "BUDGET_DAILY_PER_COUNTRY",
            ),
            (&[("SMS_PRICES", "US:cheap")], "SMS_PRICES"),
            (
                &[("BUDGET_DAILY_TOTAL", "100"), ("SMS_PRICES", "US:0.0079")],
                "SMS_PRICES",
            ),
            (&[("FRAUD_IP_MAX_CODES", "0")], "FRAUD_IP_MAX_CODES"),
            (&[("CIRCUIT_FAILURES", "0")], "CIRCUIT_FAILURES"),
            (
                &[("RECONCILE_AFTER_SECONDS", "soon")],
                "RECONCILE_AFTER_SECONDS",
            ),
            (&[("VONAGE_API_SECRET", "s")], "VONAGE_API_KEY"),
            (
                &[("VONAGE_API_KEY", "k"), ("VONAGE_FROM", "Acme")],
                "VONAGE_API_SECRET",
            ),
            (
                &[("VONAGE_API_KEY", "k"), ("VONAGE_API_SECRET", "s")],
                "VONAGE_FROM",
            ),
            (
                &[
                    ("VONAGE_API_KEY", "k"),
                    ("VONAGE_API_SECRET", "s"),
                    ("VONAGE_FROM", "Acme"),
                    ("VONAGE_API_BASE_URL", "nowhere"),
                ],
                "VONAGE_API_BASE_URL",
            ),
            (
                &[("TEST_NUMBERS", "+15005550001"), ("ENVIRONMENT", "ci")],
                "TEST_NUMBERS",
            ),
            (&[("TWILIO_AUTH_TOKEN", "t")], "TWILIO_ACCOUNT_SID"),
            (
                &[
                    ("TWILIO_ACCOUNT_SID", "AC1"),
                    ("TWILIO_PHONE_NUMBER", "+15005550006"),
                ],
                "TWILIO_AUTH_TOKEN",
            ),
            (
                &[("TWILIO_ACCOUNT_SID", "AC1"), ("TWILIO_AUTH_TOKEN", "t")],
                "TWILIO_PHONE_NUMBER",
            ),
            (
                &[
                    ("TWILIO_ACCOUNT_SID", "AC1"),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("TWILIO_PHONE_NUMBER", "555"),
                ],
                "TWILIO_PHONE_NUMBER",
            ),
        ];
        let malformed_twilio: &[(&[(&str, &str)], &str)] = &[
            (&[("TWILIO_ACCOUNT_SID", "bad-sid")], "TWILIO_ACCOUNT_SID"),
            (
                &[
                    ("TWILIO_PHONE_NUMBER", ""),
                    ("TWILIO_MESSAGING_SERVICE_SID", "XX1"),
                ],
                "TWILIO_MESSAGING_SERVICE_SID",
            ),
            (
                &[("TWILIO_API_BASE_URL", "mailto:x")],
                "TWILIO_API_BASE_URL",
            ),
            (&[("TWILIO_VOICE_FROM", "555-0100")], "TWILIO_VOICE_FROM"),
            (
                &[("TWILIO_WHATSAPP_FROM", "whatsapp")],
                "TWILIO_WHATSAPP_FROM",
            ),
            (
                &[("TWILIO_WHATSAPP_CONTENT_SIDS", "en:HX123")],
                "TWILIO_WHATSAPP_CONTENT_SIDS",
            ),
        ];
        for (changes, variable) in malformed_twilio {
            let mut pairs = TWILIO.to_vec();
            for (name, value) in *changes {
                pairs.retain(|(existing, _)| existing != name);
                pairs.push((name, value));
            }
            let error = config(&pairs).unwrap_err();
            assert_eq!(error.variable, *variable, "{changes:?} gave {error}");
        }
        for (pairs, variable) in cases {
            let error = config(pairs).unwrap_err();
            assert_eq!(error.variable, *variable, "{pairs:?} gave {error}");
        }
    }

    #[test]
    fn every_duration_refuses_an_absurd_value_naming_its_variable() {
        let durations = [
            ("VERIFY_TTL_SECONDS", "86400"),
            ("VERIFY_RESEND_INTERVAL_SECONDS", "86400"),
            ("VERIFY_SENDS_PER_NUMBER_WINDOW_SECONDS", "2592000"),
            ("VERIFY_SENDS_PER_API_KEY_WINDOW_SECONDS", "2592000"),
            ("DISPATCH_POLL_INTERVAL_MS", "3600000"),
            ("WEBHOOK_POLL_INTERVAL_MS", "3600000"),
            ("DISPATCH_LEASE_SECONDS", "86400"),
            ("RETRY_BASE_MS", "3600000"),
            ("RETRY_CAP_SECONDS", "86400"),
            ("SHUTDOWN_GRACE_SECONDS", "3600"),
            ("CIRCUIT_WINDOW_SECONDS", "86400"),
            ("CIRCUIT_COOL_DOWN_SECONDS", "86400"),
            ("RECONCILE_AFTER_SECONDS", "86400"),
            ("RECONCILE_INTERVAL_SECONDS", "86400"),
            ("TWILIO_CONNECT_TIMEOUT_MS", "300000"),
            ("TWILIO_REQUEST_TIMEOUT_MS", "300000"),
            ("VONAGE_CONNECT_TIMEOUT_MS", "300000"),
            ("VONAGE_REQUEST_TIMEOUT_MS", "300000"),
        ];
        let providers: Vec<_> = TWILIO.iter().chain(VONAGE).copied().collect();
        for (variable, longest) in durations {
            let with = |value| {
                let mut pairs = providers.clone();
                pairs.push((variable, value));
                config(&pairs)
            };
            assert!(with(longest).is_ok(), "{variable}={longest} is refused");
            let longer = (longest.parse::<u64>().unwrap() + 1).to_string();
            for absurd in [longer.as_str(), "9223372036854775807"] {
                let error = with(absurd).unwrap_err();
                assert_eq!(error.variable, variable, "{error}");
                assert_eq!(error.problem, format!("must be at most {longest}"));
            }
        }
    }

    #[test]
    fn admin_api_keys_join_the_client_keys_or_stand_alone() {
        let client = "0123456789abcdef";
        let admin = "fedcba9876543210";
        let both = config(&[
            ("API_KEYS", &format!("shop:{client}")),
            ("ADMIN_API_KEYS", &format!("ops:{admin}")),
        ])
        .unwrap();
        assert!(!both.api_keys_generated);
        assert!(!both.api_keys.authenticate(client).unwrap().is_admin());
        assert!(both.api_keys.authenticate(admin).unwrap().is_admin());

        let alone = config(&[("ADMIN_API_KEYS", &format!("ops:{admin}"))]).unwrap();
        assert!(!alone.api_keys_generated);
        assert!(alone.api_keys.authenticate(admin).unwrap().is_admin());

        let clash = config(&[
            ("API_KEYS", &format!("ops:{client}")),
            ("ADMIN_API_KEYS", &format!("ops:{admin}")),
        ]);
        assert_eq!(clash.unwrap_err().variable, "ADMIN_API_KEYS");
    }

    #[test]
    fn verify_compat_accounts_stand_for_api_keys_and_a_malformed_one_stops_startup() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let keys = ("API_KEYS", "auth:0123456789abcdef");
        let off = config(&[keys]).unwrap();
        assert!(off.verify_compat_accounts.is_empty());

        let accounts = format!("auth:{sid}:token-0123456789abcdef");
        let on = config(&[keys, ("VERIFY_COMPAT_ACCOUNTS", &accounts)]).unwrap();
        let account = on
            .verify_compat_accounts
            .authenticate(sid, "token-0123456789abcdef")
            .unwrap();
        assert_eq!(account.api_key(), "auth");

        for malformed in [
            format!("billing:{sid}:token-0123456789abcdef"),
            "auth:AC123:token-0123456789abcdef".to_owned(),
            format!("auth:{sid}"),
        ] {
            let error = config(&[keys, ("VERIFY_COMPAT_ACCOUNTS", &malformed)]).unwrap_err();
            assert_eq!(error.variable, "VERIFY_COMPAT_ACCOUNTS", "{malformed}");
            assert!(!error.to_string().contains("token-0123"), "{error}");
        }
    }

    #[test]
    fn postgres_requires_a_shared_pepper() {
        let error = config(&[("DATABASE_URL", "postgres://localhost/db")]).unwrap_err();
        assert_eq!(error.variable, "CODE_PEPPER");
        let pepper = "p".repeat(32);
        let mut pairs = TWILIO.to_vec();
        pairs.extend([
            ("DATABASE_URL", "postgres://localhost/db"),
            ("CODE_PEPPER", &pepper),
        ]);
        assert!(config(&pairs).is_ok());
    }

    const DEPLOYMENT: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://localhost/db"),
        ("CODE_PEPPER", "pppppppppppppppppppppppppppppppp"),
    ];

    #[test]
    fn postgres_without_a_provider_is_refused_naming_both_ways_out() {
        let error = config(DEPLOYMENT).unwrap_err();
        assert_eq!(error.variable, "TWILIO_ACCOUNT_SID");
        assert!(error.problem.contains("SMS_PROVIDERS=console"), "{error}");
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }

    #[test]
    fn the_console_with_postgres_must_be_asked_for_by_name_and_alone() {
        let mut pairs = DEPLOYMENT.to_vec();
        pairs.push(("SMS_PROVIDERS", "console"));
        assert_eq!(provider_names(&config(&pairs).unwrap()), ["console"]);

        let mut both = TWILIO.to_vec();
        both.push(("SMS_PROVIDERS", "twilio,console"));
        assert_eq!(config(&both).unwrap_err().variable, "SMS_PROVIDERS");
    }

    #[test]
    fn commands_that_send_nothing_read_a_deployment_without_its_provider() {
        let map: HashMap<&str, &str> = DEPLOYMENT.iter().copied().collect();
        let config = Config::read(
            |name| map.get(name).map(|v| v.to_string()),
            Sending::NotNeeded,
        )
        .unwrap();
        assert_eq!(provider_names(&config), ["none"]);
    }

    #[test]
    fn database_location_is_the_url_without_its_password() {
        let location = |url: &str| {
            DatabaseConfig::Postgres {
                url: SecretString::from(url.to_owned()),
                pool_size: DEFAULT_POOL_SIZE,
            }
            .location()
        };
        assert_eq!(
            location("postgres://u:secret@127.0.0.1:1/x"),
            "postgres://u@127.0.0.1:1/x"
        );
        assert_eq!(
            location("postgres://u@db/x?password=secret&sslmode=require"),
            "postgres://u@db/x?sslmode=require"
        );
        assert_eq!(location("postgres://db/x"), "postgres://db/x");
        let malformed = config(&[("DATABASE_URL", "postgres://u:secret@db:port/x")]).unwrap_err();
        assert!(!malformed.to_string().contains("secret"), "{malformed}");
    }

    #[test]
    fn database_pool_size_is_the_default_or_a_checked_number_and_only_for_postgresql() {
        let postgres = ("DATABASE_URL", "postgres://db/sms");
        let pepper = ("CODE_PEPPER", "0123456789abcdef0123456789abcdef");
        let console = ("SMS_PROVIDERS", "console");
        let pool = |size: Option<&str>| {
            let mut pairs = vec![postgres, pepper, console];
            pairs.extend(size.map(|size| ("DATABASE_POOL_SIZE", size)));
            config(&pairs).map(|config| config.database.pool_size())
        };
        assert_eq!(pool(None).unwrap(), Some(DEFAULT_POOL_SIZE));
        assert_eq!(pool(Some("3")).unwrap(), Some(3));
        assert_eq!(pool(Some("1000")).unwrap(), Some(1_000));
        for wrong in ["0", "2", "1001", "-5", "twenty"] {
            let error = pool(Some(wrong)).unwrap_err();
            assert_eq!(error.variable, "DATABASE_POOL_SIZE", "{wrong}");
        }
        assert!(pool(Some("2"))
            .unwrap_err()
            .to_string()
            .contains("between 3"));
        let sqlite = config(&[("DATABASE_POOL_SIZE", "10")]).unwrap_err();
        assert_eq!(sqlite.variable, "DATABASE_POOL_SIZE");
        assert!(sqlite.to_string().contains("PostgreSQL"), "{sqlite}");
    }

    #[test]
    fn database_description_hides_credentials() {
        let database = DatabaseConfig::Postgres {
            url: SecretString::from("postgres://user:hunter2@db.internal:6543/sms".to_owned()),
            pool_size: DEFAULT_POOL_SIZE,
        };
        let text = database.describe();
        assert_eq!(text, "PostgreSQL at db.internal:6543/sms");
    }
}
