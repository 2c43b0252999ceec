//! The application: use cases (send, dispatch, verify), the HTTP API, configuration, and the
//! wiring that turns configuration into running adapters.
//!
//! This is the only library crate that names concrete adapters, and only in [`wiring::server`], where
//! configuration picks them; the use cases see ports. Nothing else in the workspace may depend
//! on `app` but binaries (`cli`) and the end-to-end tests.

pub mod dispatch;
pub mod http;
pub mod observability;
pub mod providers;
pub mod usecases;
pub mod wiring;

use std::sync::Arc;

use domain::VerificationPolicy;
use ports::{Clock, CodeGenerator, MessageReports, MessageStore, VerificationStore};
use template::Templates;
use tokio::sync::Notify;

pub use wiring::config::Config;
pub use wiring::server::{Server, StartupError};

/// Everything the use cases need, as ports. Built once at startup and shared by the HTTP
/// handlers.
pub struct Services {
    pub messages: Arc<dyn MessageStore>,
    pub verifications: Arc<dyn VerificationStore>,
    pub templates: Arc<Templates>,
    pub clock: Arc<dyn Clock>,
    pub code_generator: Arc<dyn CodeGenerator>,
    pub hasher: usecases::codes::CodeHasher,
    pub verification_policy: VerificationPolicy,
    pub api_keys: usecases::auth::ApiKeys,
    /// Signalled when a message is queued, so that this instance's dispatcher sends it now
    /// rather than at its next poll.
    pub dispatcher_wake: Arc<Notify>,
    /// Set when Twilio posts delivery statuses to `POST /v1/webhooks/twilio/status`.
    pub twilio_status_callbacks: Option<wiring::config::TwilioStatusCallbacks>,
    /// Allow-list, send limits and pumping alarm, in front of every one-time code.
    pub guards: usecases::guards::SendGuards,
    pub reports: Arc<dyn MessageReports>,
    pub metrics: Arc<observability::metrics::Metrics>,
    pub readiness: Arc<observability::health::Readiness>,
    /// Numbers whose verifications use a fixed code (`TEST_NUMBERS`); empty in production.
    pub test_numbers: providers::test_numbers::TestNumbers,
}
