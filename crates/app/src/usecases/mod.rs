//! The use cases the HTTP API and the CLI call: send a message, start, check and cancel a
//! verification, read messages, verifications and reports, with what they need around them
//! (API keys, one-time codes, the guards in front of every code, the request being served).
//!
//! [`Services`] is their only door: the HTTP handlers and the CLI's commands call its methods
//! and never reach a port, and the use cases count what they do in the metrics here, so that
//! every caller is counted alike.

pub mod auth;
pub mod channels;
pub mod code_texts;
pub mod codes;
pub mod erasure;
pub mod events;
pub mod fraud;
pub mod fraud_admin;
pub mod guards;
pub mod inspect;
pub mod messaging;
pub mod operator_sessions;
pub mod overview;
pub mod reports;
pub mod request_context;
pub mod rollups;
pub mod verify;
pub mod verify_compat;
pub mod workflows;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::fraud::{Mode, Policies, Policy};
use domain::VerificationPolicy;
use ports::{
    Clock, CodeGenerator, DataLifecycle, FraudStore, MessageReports, MessageStore, RateLimiter,
    StoreError, StoreHealth, VerificationStore, VerifyServiceStore, WebhookStore, WorkflowStore,
};
use template::Templates;
use tokio::sync::Notify;

use crate::observability::health::Readiness;
use crate::observability::metrics::Metrics;
use crate::providers::failover::CircuitBoard;
use crate::providers::missing::MissingSmsProvider;
use crate::providers::test_numbers::TestNumbers;
use crate::wiring::config::{TwilioStatusCallbacks, WebhookConfig};
use auth::{ApiKey, ApiKeys};
use channels::{OfferedChannels, WhatsappTemplates};
use code_texts::CodeTexts;
use codes::{CodeHasher, OsCodeGenerator, SystemClock};
use fraud::{FraudConfig, FraudScreen};
use guards::{GuardConfig, SendGuards};
use verify_compat::VerifyCompat;

/// One database, seen through each port the use cases, the guards and readiness use.
#[derive(Clone)]
pub struct StorePorts {
    pub messages: Arc<dyn MessageStore>,
    pub verifications: Arc<dyn VerificationStore>,
    pub reports: Arc<dyn MessageReports>,
    pub health: Arc<dyn StoreHealth>,
    pub limiter: Arc<dyn RateLimiter>,
    pub fraud: Arc<dyn FraudStore>,
    pub verify_services: Arc<dyn VerifyServiceStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub workflows: Arc<dyn WorkflowStore>,
    pub lifecycle: Arc<dyn DataLifecycle>,
}

impl StorePorts {
    /// `store` through every port.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: MessageStore
            + VerificationStore
            + MessageReports
            + StoreHealth
            + RateLimiter
            + FraudStore
            + VerifyServiceStore
            + WebhookStore
            + WorkflowStore
            + DataLifecycle
            + 'static,
    {
        Self {
            messages: store.clone(),
            verifications: store.clone(),
            reports: store.clone(),
            health: store.clone(),
            limiter: store.clone(),
            fraud: store.clone(),
            verify_services: store.clone(),
            webhooks: store.clone(),
            workflows: store.clone(),
            lifecycle: store,
        }
    }
}

/// The use cases over their ports. Built once at startup ([`Services::builder`]) and shared by
/// the HTTP handlers, or by one CLI command.
pub struct Services {
    messages: Arc<dyn MessageStore>,
    verifications: Arc<dyn VerificationStore>,
    reports: Arc<dyn MessageReports>,
    /// The fraud guard's shared state: blocks, safe list, decision log.
    fraud: Arc<dyn FraudStore>,
    templates: Arc<Templates>,
    clock: Arc<dyn Clock>,
    code_generator: Arc<dyn CodeGenerator>,
    hasher: CodeHasher,
    verification_policy: VerificationPolicy,
    api_keys: ApiKeys,
    /// Signalled when a message is queued, so that this instance's dispatcher sends it now
    /// rather than at its next poll.
    dispatcher_wake: Arc<Notify>,
    /// Set when Twilio posts delivery statuses to `POST /v1/webhooks/twilio/status`.
    twilio_status_callbacks: Option<TwilioStatusCallbacks>,
    /// Allow-list and send limits, in front of every one-time code.
    guards: SendGuards,
    /// The fraud guard, in front of every one-time code after the allow-list.
    fraud_guard: FraudScreen,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// Numbers whose verifications use a fixed code (`TEST_NUMBERS`); empty in production.
    test_numbers: TestNumbers,
    /// The channels a verification may go out on.
    channels: OfferedChannels,
    /// WhatsApp codes' approved templates by locale.
    whatsapp_templates: WhatsappTemplates,
    /// The language of a code when the request names none, and the autofill lines.
    code_texts: CodeTexts,
    /// The Verify services of the Twilio-compatible API (`verify_compat`).
    verify_services: Arc<dyn VerifyServiceStore>,
    verify_compat: VerifyCompat,
    /// Client webhooks' endpoints and events (`events`).
    webhooks: Arc<dyn WebhookStore>,
    webhook_config: WebhookConfig,
    /// Fallback workflows: their steps, and verifications' attempts.
    workflows: Arc<dyn WorkflowStore>,
    /// Retention's and erasure's side of the store.
    lifecycle: Arc<dyn DataLifecycle>,
    /// What the dashboard's sessions are signed with (`operator_sessions`).
    session_key: operator_sessions::SessionKey,
    /// The failover's circuits, read for operators; `None` with one provider (no failover).
    circuits: Option<CircuitBoard>,
}

impl Services {
    /// Use cases over `stores` that render with `templates` and hash codes with `hasher`; the
    /// builder's methods say what else defaults, and to what.
    pub fn builder(
        stores: StorePorts,
        templates: Arc<Templates>,
        hasher: CodeHasher,
    ) -> ServicesBuilder {
        ServicesBuilder {
            readiness: Readiness::new(stores.health.clone(), Arc::new(MissingSmsProvider)),
            stores,
            templates,
            hasher,
            clock: Arc::new(SystemClock),
            code_generator: Arc::new(OsCodeGenerator),
            verification_policy: VerificationPolicy::default(),
            api_keys: ApiKeys::default(),
            dispatcher_wake: Arc::new(Notify::new()),
            twilio_status_callbacks: None,
            guards: GuardConfig::default(),
            fraud_guard: FraudConfig::default(),
            metrics: Arc::new(Metrics::new()),
            test_numbers: TestNumbers::default(),
            channels: OfferedChannels::default(),
            whatsapp_templates: WhatsappTemplates::default(),
            code_texts: CodeTexts::default(),
            verify_compat: VerifyCompat::default(),
            webhook_config: WebhookConfig::default(),
            circuits: None,
        }
    }

    /// The time the use cases go by, for what a caller shows relative to it (a verification's
    /// status, `since=24h`).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The API key `presented` is, if it is one.
    pub fn authenticate(&self, presented: &str) -> Option<&ApiKey> {
        self.api_keys.authenticate(presented)
    }

    /// Whether clients reach the service by https (`PUBLIC_BASE_URL`): then the dashboard's
    /// cookies are sent over https only.
    pub fn serves_https(&self) -> bool {
        self.verify_compat
            .public_base_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https")
    }

    /// The templates messages are rendered from.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Set when Twilio reports deliveries (`PUBLIC_BASE_URL`): what tells its posts from
    /// forgeries. Without it, a sent message is as far as this service will see it go.
    pub fn twilio_status_callbacks(&self) -> Option<&TwilioStatusCallbacks> {
        self.twilio_status_callbacks.as_ref()
    }

    /// Whether this instance can do its job now (`/readyz`).
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The registry the use cases count in, for the HTTP layer's own request metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics in the OpenMetrics text format, the store's gauges read at most once a
    /// [`crate::observability::metrics::GAUGE_READ_INTERVAL`].
    pub async fn render_metrics(&self) -> Result<String, StoreError> {
        self.metrics
            .render(self.reports.as_ref(), self.clock.now())
            .await
    }

    /// The fraud guard's policies and their modes: the configured ones with an admin's run-time
    /// changes over them.
    pub async fn fraud_policies(&self) -> Result<Policies, StoreError> {
        self.fraud_guard.policies().await
    }

    /// Sets policies' modes for every instance (each reads them within a second); the modes
    /// now in force.
    pub async fn set_fraud_policies(
        &self,
        changes: &[(Policy, Mode)],
    ) -> Result<Policies, StoreError> {
        self.fraud_guard
            .set_policies(changes, self.clock.now())
            .await
    }

    /// Forgets the fraud guard's hourly counts older than any baseline (an hourly job); how
    /// many hourly rows went.
    pub async fn forget_fraud_counts(&self) -> Result<u64, StoreError> {
        let before = domain::pumping::hour_of(self.clock.now())
            - domain::fraud::signal_baseline_period()
            - chrono::TimeDelta::hours(1);
        self.fraud.forget_counts(before).await
    }

    /// Settles the daily budgets' reservations of the messages that left the queue: those that
    /// ended without a provider taking them (failed for good, expired unsent) give theirs
    /// back. How many did.
    pub async fn settle_budget_spend(&self) -> Result<u64, StoreError> {
        self.fraud_guard.settle_spend().await
    }

    /// The signal the dispatcher waits on, which the use cases give when they queue a message.
    pub(crate) fn dispatcher_wake(&self) -> &Arc<Notify> {
        &self.dispatcher_wake
    }
}

/// Builds [`Services`]. What is not set is what a service without configuration has.
pub struct ServicesBuilder {
    stores: StorePorts,
    templates: Arc<Templates>,
    hasher: CodeHasher,
    clock: Arc<dyn Clock>,
    code_generator: Arc<dyn CodeGenerator>,
    verification_policy: VerificationPolicy,
    api_keys: ApiKeys,
    dispatcher_wake: Arc<Notify>,
    twilio_status_callbacks: Option<TwilioStatusCallbacks>,
    guards: GuardConfig,
    fraud_guard: FraudConfig,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    test_numbers: TestNumbers,
    channels: OfferedChannels,
    whatsapp_templates: WhatsappTemplates,
    code_texts: CodeTexts,
    verify_compat: VerifyCompat,
    webhook_config: WebhookConfig,
    circuits: Option<CircuitBoard>,
}

impl ServicesBuilder {
    /// Unless set, the system's clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Unless set, random codes from the operating system.
    pub fn code_generator(mut self, code_generator: Arc<dyn CodeGenerator>) -> Self {
        self.code_generator = code_generator;
        self
    }

    /// Unless set, [`VerificationPolicy::default`].
    pub fn verification_policy(mut self, policy: VerificationPolicy) -> Self {
        self.verification_policy = policy;
        self
    }

    /// Unless set, none: every request is refused.
    pub fn api_keys(mut self, api_keys: ApiKeys) -> Self {
        self.api_keys = api_keys;
        self
    }

    /// Unless set, a signal no dispatcher waits on.
    pub fn dispatcher_wake(mut self, wake: Arc<Notify>) -> Self {
        self.dispatcher_wake = wake;
        self
    }

    /// Unless set, none: delivery reports are refused.
    pub fn twilio_status_callbacks(mut self, callbacks: Option<TwilioStatusCallbacks>) -> Self {
        self.twilio_status_callbacks = callbacks;
        self
    }

    /// Unless set, [`GuardConfig::default`]. The guards count in the store's rate limiter.
    pub fn guards(mut self, config: GuardConfig) -> Self {
        self.guards = config;
        self
    }

    /// Unless set, [`FraudConfig::default`]: every policy enforced. The guard reads and writes
    /// the store's `FraudStore`, counts IP velocity in its rate limiter, and goes by the clock
    /// set here, so that a simulation can drive it through days of traffic.
    pub fn fraud_guard(mut self, config: FraudConfig) -> Self {
        self.fraud_guard = config;
        self
    }

    /// Unless set, a registry of its own.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Unless set, readiness over the store with no provider: never ready.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Unless set, none.
    pub fn test_numbers(mut self, test_numbers: TestNumbers) -> Self {
        self.test_numbers = test_numbers;
        self
    }

    /// Unless set, no accounts: the Twilio-compatible API is off.
    pub fn verify_compat(mut self, verify_compat: VerifyCompat) -> Self {
        self.verify_compat = verify_compat;
        self
    }

    /// Unless set, [`OfferedChannels::default`]: texts, no calls.
    pub fn channels(mut self, channels: OfferedChannels) -> Self {
        self.channels = channels;
        self
    }

    /// Unless set, none: a WhatsApp verification is refused.
    pub fn whatsapp_templates(mut self, templates: WhatsappTemplates) -> Self {
        self.whatsapp_templates = templates;
        self
    }

    /// Unless set, [`CodeTexts::default`]: the language follows the number's country, and no
    /// autofill line. (The brand is the templates': `Templates::with_brand`.)
    pub fn code_texts(mut self, code_texts: CodeTexts) -> Self {
        self.code_texts = code_texts;
        self
    }

    /// Unless set, [`WebhookConfig::default`]: endpoints must be https to public addresses.
    pub fn webhooks(mut self, config: WebhookConfig) -> Self {
        self.webhook_config = config;
        self
    }

    /// Unless set, none: one provider, no circuit to show.
    pub fn provider_circuits(mut self, circuits: Option<CircuitBoard>) -> Self {
        self.circuits = circuits;
        self
    }

    pub fn build(self) -> Services {
        Services {
            fraud_guard: FraudScreen::new(
                self.stores.fraud.clone(),
                self.stores.limiter.clone(),
                self.fraud_guard,
                self.metrics.clone(),
            ),
            fraud: self.stores.fraud,
            session_key: operator_sessions::SessionKey::derive(&self.hasher),
            guards: SendGuards::new(self.stores.limiter, self.guards),
            messages: self.stores.messages,
            verifications: self.stores.verifications,
            reports: self.stores.reports,
            templates: self.templates,
            clock: self.clock,
            code_generator: self.code_generator,
            hasher: self.hasher,
            verification_policy: self.verification_policy,
            api_keys: self.api_keys,
            dispatcher_wake: self.dispatcher_wake,
            twilio_status_callbacks: self.twilio_status_callbacks,
            metrics: self.metrics,
            readiness: Arc::new(self.readiness),
            test_numbers: self.test_numbers,
            channels: self.channels,
            whatsapp_templates: self.whatsapp_templates,
            code_texts: self.code_texts,
            verify_services: self.stores.verify_services,
            verify_compat: self.verify_compat,
            webhooks: self.stores.webhooks,
            webhook_config: self.webhook_config,
            workflows: self.stores.workflows,
            lifecycle: self.stores.lifecycle,
            circuits: self.circuits,
        }
    }
}
