//! Why a command did not succeed, as its exit code tells a script: a negative answer (1), the
//! operator's mistake in the command, its input or the configuration (2), or a dependency that
//! failed (3: the database or the provider), which a retry later may get past.

use std::process::ExitCode;

use app::wiring::server::StartupError;
use app::wiring::store::DatabaseError;
use ports::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A wrong code, a verification that is not approved or does not exist, a message lost.
    Negative = 1,
    Usage = 2,
    Dependency = 3,
}

impl From<Class> for ExitCode {
    fn from(class: Class) -> Self {
        ExitCode::from(class as u8)
    }
}

/// An error that knows its class; any other error is classed by what it wraps.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: Class,
    message: String,
}

impl Failure {
    pub fn negative(message: impl Into<String>) -> anyhow::Error {
        Self::error(Class::Negative, message)
    }

    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Self::error(Class::Usage, message)
    }

    fn error(class: Class, message: impl Into<String>) -> anyhow::Error {
        Self {
            class,
            message: message.into(),
        }
        .into()
    }
}

/// A store's error is the database's failure; anything not classed otherwise is the operator's
/// to fix (a file, a template, a variable, the configuration).
pub fn class_of(error: &anyhow::Error) -> Class {
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return failure.class;
    }
    let database_down = error.downcast_ref::<StoreError>().is_some()
        || error
            .downcast_ref::<DatabaseError>()
            .is_some_and(|error| matches!(error, DatabaseError::Failed(_)))
        || error
            .downcast_ref::<StartupError>()
            .is_some_and(|error| error.exit_code() == Class::Dependency as u8);
    if database_down {
        Class::Dependency
    } else {
        Class::Usage
    }
}
