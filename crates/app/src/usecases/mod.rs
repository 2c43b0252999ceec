//! The use cases the HTTP API and the CLI call: send a message, start, check and cancel a
//! verification, with what they need around them (API keys, one-time codes, the guards in front
//! of every code, the request being served).

pub mod auth;
pub mod codes;
pub mod guards;
pub mod messaging;
pub mod request_context;
pub mod verify;

use std::sync::Arc;

use ports::{MessageReports, MessageStore, RateLimiter, StoreHealth, VerificationStore};

/// One database, seen through each port the use cases, the guards and readiness use.
#[derive(Clone)]
pub struct StorePorts {
    pub messages: Arc<dyn MessageStore>,
    pub verifications: Arc<dyn VerificationStore>,
    pub reports: Arc<dyn MessageReports>,
    pub health: Arc<dyn StoreHealth>,
    pub limiter: Arc<dyn RateLimiter>,
}

impl StorePorts {
    /// `store` through every port.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: MessageStore + VerificationStore + MessageReports + StoreHealth + RateLimiter + 'static,
    {
        Self {
            messages: store.clone(),
            verifications: store.clone(),
            reports: store.clone(),
            health: store.clone(),
            limiter: store,
        }
    }
}
