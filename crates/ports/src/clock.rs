//! Time and randomness as ports, so that expiry, backoff and codes are testable without
//! waiting or guessing.

use chrono::{DateTime, Utc};
use domain::{CodeLength, VerificationCode};

/// The time, injected so that expiry and backoff can be tested without waiting.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Where one-time codes come from. Production uses the OS CSPRNG; tests use a fixed sequence.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait CodeGenerator: Send + Sync {
    fn generate(&self, length: CodeLength) -> VerificationCode;
}
