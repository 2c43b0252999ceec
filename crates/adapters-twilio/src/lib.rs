//! The Twilio adapter: sends SMS and WhatsApp messages through Twilio's Programmable Messaging
//! REST API (WhatsApp codes with an approved Content template) and places calls that speak a
//! code through its Voice API with inline TwiML (implementing [`ports::SmsProvider`]), checks that the credentials work
//! ([`TwilioSmsProvider::check_credentials`]), looks up a message's status
//! (implementing [`ports::StatusLookup`]), finds a message it accepted without answering
//! (implementing [`ports::SentMessageSearch`]), and checks and reads the status callbacks
//! Twilio posts back.
//!
//! The adapter never retries: it classifies every failure as retryable or permanent in a
//! [`ports::ProviderError`] and leaves the retry policy to the dispatcher. Twilio's wire types
//! stay private here; only domain and port types cross the boundary.
//!
//! This crate must never depend on a web framework (no axum), a database (no sqlx) or on `app`:
//! the HTTP handler that receives callbacks lives in `app` and calls [`validate_signature`] and
//! [`parse_status_callback`] with plain strings.

mod account;
mod config;
mod provider;
mod sent_search;
mod signature;
mod sms_provider;
mod status_callback;
mod status_lookup;
mod twiml;
mod wire;

pub use account::{CredentialsError, TwilioAccount};
pub use config::{TwilioConfig, TwilioConfigError, TwilioCredentials, TwilioSender};
pub use provider::TwilioSmsProvider;
pub use signature::validate_signature;
pub use status_callback::{parse_status_callback, StatusCallback, StatusCallbackError};
