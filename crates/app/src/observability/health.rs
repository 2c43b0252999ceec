//! Readiness: whether this instance can do its job now. The database must answer and carry
//! every migration of this build; the provider must be configured and, where it can tell
//! ([`SmsProvider::check_ready`]: Twilio's credentials being accepted), ready. The provider's
//! answer is cached, so that probes every few seconds do not become calls to Twilio. A check
//! that fails says what failed in words of ours, never the provider's own text: the answer is
//! public, and the log has the rest.

use std::sync::Arc;
use std::time::Duration;

use ports::{ProviderError, ProviderErrorKind, SmsProvider, StoreHealth};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long the provider's answer is reused.
pub const PROVIDER_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// How long the database may take to answer the check: a probe that waited for a database
/// that is down would time out in the prober before it heard `not ready`.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The outcome of one readiness check, by the name of what was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    /// `None` when it passed; else what is wrong, fit for an operator's eyes.
    pub problem: Option<String>,
}

pub struct Readiness {
    store: Arc<dyn StoreHealth>,
    provider: Arc<dyn SmsProvider>,
    provider_names: Vec<&'static str>,
    provider_answer: Mutex<Option<(Instant, Option<String>)>>,
}

impl Readiness {
    pub fn new(store: Arc<dyn StoreHealth>, provider: Arc<dyn SmsProvider>) -> Self {
        Self {
            store,
            provider,
            provider_names: Vec::new(),
            provider_answer: Mutex::new(None),
        }
    }

    /// Names the configured providers behind `provider`, in failover order.
    pub fn with_provider_names(mut self, names: Vec<&'static str>) -> Self {
        self.provider_names = names;
        self
    }

    /// The configured providers, in failover order: what a ready answer names, so that an
    /// instance that prints SMS to its log (`console`) says so where operators look.
    pub fn provider_names(&self) -> &[&'static str] {
        &self.provider_names
    }

    /// Every check, in a fixed order: `database`, `migrations`, `provider`.
    pub async fn check(&self) -> Vec<Check> {
        let pending =
            tokio::time::timeout(DATABASE_CHECK_TIMEOUT, self.store.pending_migrations()).await;
        let (database, migrations) = match pending {
            Ok(Ok(0)) => (None, None),
            Ok(Ok(pending)) => (
                None,
                Some(format!(
                    "{pending} migration(s) of this version are not applied"
                )),
            ),
            failed => {
                match failed {
                    Ok(Err(error)) => tracing::warn!(%error, "readiness: database check failed"),
                    _ => tracing::warn!("readiness: the database did not answer in time"),
                }
                (
                    Some("the database does not answer".to_owned()),
                    Some("unknown while the database does not answer".to_owned()),
                )
            }
        };
        vec![
            Check {
                name: "database",
                problem: database,
            },
            Check {
                name: "migrations",
                problem: migrations,
            },
            Check {
                name: "provider",
                problem: self.provider_problem().await,
            },
        ]
    }

    async fn provider_problem(&self) -> Option<String> {
        // Held across the call, so that concurrent probes make one provider call between them.
        let mut answer = self.provider_answer.lock().await;
        if let Some((at, problem)) = answer.as_ref() {
            if at.elapsed() < PROVIDER_CHECK_INTERVAL {
                return problem.clone();
            }
        }
        let problem = match self.provider.check_ready().await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(provider = error.provider, %error, "readiness: provider not ready");
                Some(not_ready_because(&error))
            }
        };
        *answer = Some((Instant::now(), problem.clone()));
        problem
    }
}

/// Which provider failed the check and how (`twilio: credentials refused (HTTP 401)`).
fn not_ready_because(error: &ProviderError) -> String {
    let how = match (error.kind, error.http_status) {
        (ProviderErrorKind::Account, Some(401 | 403)) => "credentials refused",
        (ProviderErrorKind::Account, _) => "account refused",
        (ProviderErrorKind::Retryable | ProviderErrorKind::Ambiguous, _) => "unavailable",
        (ProviderErrorKind::Permanent, _) => "check refused",
    };
    match error.http_status {
        Some(status) => format!("{}: {how} (HTTP {status})", error.provider),
        None => format!("{}: {how}", error.provider),
    }
}

#[cfg(test)]
mod tests {
    use ports::{MockSmsProvider, MockStoreHealth, ProviderError, ProviderErrorKind, StoreError};

    use super::*;

    fn store_answering(pending: Result<usize, ()>) -> Arc<MockStoreHealth> {
        let mut store = MockStoreHealth::new();
        store.expect_pending_migrations().returning(move || {
            pending.map_err(|()| StoreError::Unavailable("connection refused".into()))
        });
        Arc::new(store)
    }

    fn problems(checks: &[Check]) -> Vec<(&'static str, bool)> {
        checks
            .iter()
            .map(|check| (check.name, check.problem.is_none()))
            .collect()
    }

    fn provider_refusing(times: usize) -> MockSmsProvider {
        let mut provider = MockSmsProvider::new();
        provider.expect_name().return_const("twilio");
        provider.expect_check_ready().times(times).returning(|| {
            Err(ProviderError {
                provider: "twilio",
                kind: ProviderErrorKind::Account,
                http_status: Some(401),
                code: Some("20003".into()),
                message: "authentication failed".into(),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            })
        });
        provider
    }

    #[tokio::test]
    async fn a_reachable_migrated_database_and_a_ready_provider_are_ready() {
        let mut provider = MockSmsProvider::new();
        provider.expect_check_ready().returning(|| Ok(()));
        let readiness = Readiness::new(store_answering(Ok(0)), Arc::new(provider));
        assert_eq!(
            problems(&readiness.check().await),
            [("database", true), ("migrations", true), ("provider", true)]
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_or_missing_migrations_are_not_ready() {
        let mut provider = MockSmsProvider::new();
        provider.expect_check_ready().returning(|| Ok(()));
        let provider = Arc::new(provider);
        let down = Readiness::new(store_answering(Err(())), provider.clone());
        assert_eq!(
            problems(&down.check().await),
            [
                ("database", false),
                ("migrations", false),
                ("provider", true)
            ]
        );
        let behind = Readiness::new(store_answering(Ok(1)), provider);
        assert_eq!(
            problems(&behind.check().await),
            [
                ("database", true),
                ("migrations", false),
                ("provider", true)
            ]
        );
    }

    /// A database that holds the check (a connection that never answers) is not ready within
    /// the check's timeout, rather than a probe that hangs.
    #[tokio::test(start_paused = true)]
    async fn a_database_that_does_not_answer_in_time_is_not_ready() {
        struct Hanging;
        #[async_trait::async_trait]
        impl StoreHealth for Hanging {
            async fn pending_migrations(&self) -> Result<usize, StoreError> {
                std::future::pending().await
            }
        }
        let mut provider = MockSmsProvider::new();
        provider.expect_check_ready().returning(|| Ok(()));
        let readiness = Readiness::new(Arc::new(Hanging), Arc::new(provider));
        let started = Instant::now();
        assert_eq!(
            problems(&readiness.check().await),
            [
                ("database", false),
                ("migrations", false),
                ("provider", true)
            ]
        );
        assert_eq!(started.elapsed(), DATABASE_CHECK_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_providers_answer_is_reused_within_the_interval() {
        let readiness = Readiness::new(store_answering(Ok(0)), Arc::new(provider_refusing(2)));
        let first = readiness.check().await;
        assert_eq!(
            first[2].problem.as_deref(),
            Some("twilio: credentials refused (HTTP 401)"),
            "named in our words, not Twilio's"
        );
        tokio::time::advance(PROVIDER_CHECK_INTERVAL - Duration::from_secs(1)).await;
        assert_eq!(readiness.check().await, first, "cached: no second call");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            readiness.check().await,
            first,
            "asked again: the second call"
        );
    }
}
