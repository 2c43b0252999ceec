//! Vonage's SMS API (`POST {base}/sms/json`) behind the `SmsProvider` port: the second provider,
//! so that a Twilio outage does not stop one-time codes.
//!
//! Like every adapter it classifies failures and never retries by itself. It must never depend
//! on another adapter, on `app`, or on a web framework or database driver.

mod provider;

pub use provider::{VonageConfig, VonageConfigError, VonageSmsProvider};
