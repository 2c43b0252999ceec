//! Failover across providers: each attempt goes to the first provider, in the configured order
//! (`SMS_PROVIDERS`), whose circuit lets it through.
//!
//! A circuit counts the provider-wide failures of its provider (timeouts, 5xx, throttling: see
//! [`ports::ProviderError::is_provider_wide`]). It opens after `failures` of them within
//! `window`, or at once on an account failure (bad credentials do not fix themselves), and
//! stays open for `cool_down`; then one attempt probes the provider (half-open) while the others
//! keep going elsewhere, and the probe's outcome closes or reopens it. A failure about the
//! message or its recipient (invalid number, opted out) is final: it is never tried through the
//! next provider, and it proves the provider is working.
//!
//! A provider that cannot send on the message's channel ([`SmsProvider::can_send`]: Vonage
//! places no call) is passed over, never asked: a code meant to be spoken is never sent as a
//! text.
//!
//! Circuits live in this instance's memory: each instance learns for itself in a few attempts,
//! and none needs another's state. [`CircuitBoard`] reads them for operators (the dashboard):
//! each circuit's state, since when, and its provider's recent failures.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::Channel;
use ports::{
    Clock, OutboundMessage, ProviderError, ProviderErrorKind, ProviderReceipt, SmsProvider,
};

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Provider-wide failures within `window` that open the circuit.
    pub failures: u32,
    pub window: Duration,
    /// How long an open circuit keeps attempts away before one probes the provider.
    pub cool_down: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Attempts go through; the times of recent provider-wide failures.
    Closed(VecDeque<DateTime<Utc>>),
    Open {
        until: DateTime<Utc>,
    },
    /// One attempt is probing the provider since then.
    HalfOpen {
        probe_since: DateTime<Utc>,
    },
}

/// One provider's circuit. Pure: time comes in as an argument.
#[derive(Debug)]
struct Circuit {
    policy: CircuitPolicy,
    state: State,
    /// When `state` last changed kind (closed, open, half-open).
    since: DateTime<Utc>,
    /// Every provider-wide failure within `window`, whatever the state: what operators read,
    /// while `State::Closed` counts only those since the circuit last closed.
    recent: VecDeque<DateTime<Utc>>,
}

/// A circuit's state, as operators read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts go through.
    Closed,
    /// Attempts go to the next provider until the cool-down ends.
    Open,
    /// One attempt is probing the provider.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// One provider's circuit at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCircuit {
    pub provider: &'static str,
    pub state: CircuitState,
    /// When it came to this state (the instance's start for a circuit closed since).
    pub since: DateTime<Utc>,
    /// The provider-wide failures (timeouts, 5xx, throttling, account) within the window.
    pub recent_failures: u32,
    /// When an open circuit lets a probe through.
    pub probe_at: Option<DateTime<Utc>>,
}

/// What a circuit says about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Closed,
    Probe,
    /// Not before then.
    Refused(DateTime<Utc>),
}

impl Circuit {
    fn new(policy: CircuitPolicy, now: DateTime<Utc>) -> Self {
        Self {
            policy,
            state: State::Closed(VecDeque::new()),
            since: now,
            recent: VecDeque::new(),
        }
    }

    fn window(&self) -> TimeDelta {
        TimeDelta::from_std(self.policy.window).unwrap_or(TimeDelta::MAX)
    }

    /// What operators read of it at `now`.
    fn status(&self, provider: &'static str, now: DateTime<Utc>) -> ProviderCircuit {
        let (state, probe_at) = match self.state {
            State::Closed(_) => (CircuitState::Closed, None),
            State::Open { until } => (CircuitState::Open, Some(until)),
            State::HalfOpen { .. } => (CircuitState::HalfOpen, None),
        };
        let window = self.window();
        let recent = self.recent.iter().filter(|at| **at > now - window).count();
        ProviderCircuit {
            provider,
            state,
            since: self.since,
            recent_failures: u32::try_from(recent).unwrap_or(u32::MAX),
            probe_at,
        }
    }

    fn cool_down(&self) -> TimeDelta {
        TimeDelta::from_std(self.policy.cool_down).unwrap_or(TimeDelta::MAX)
    }

    fn admit(&mut self, now: DateTime<Utc>) -> Admission {
        match self.state {
            State::Closed(_) => Admission::Closed,
            State::Open { until } if now < until => Admission::Refused(until),
            // A probe that never reported (its send was abandoned at shutdown) must not keep
            // the circuit half-open for ever: after another cool-down, another probe.
            State::HalfOpen { probe_since } if now < probe_since + self.cool_down() => {
                Admission::Refused(probe_since + self.cool_down())
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                self.state = State::HalfOpen { probe_since: now };
                self.since = now;
                Admission::Probe
            }
        }
    }

    fn succeeded(&mut self, now: DateTime<Utc>) {
        if !matches!(self.state, State::Closed(_)) {
            self.since = now;
        }
        self.state = State::Closed(VecDeque::new());
    }

    /// Counts a provider-wide failure; `at_once` opens the circuit whatever the count. Returns
    /// whether the circuit is open now.
    fn failed(&mut self, now: DateTime<Utc>, at_once: bool) -> bool {
        let window = self.window();
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|at| *at <= now - window) {
            self.recent.pop_front();
        }
        let open = match &mut self.state {
            State::Closed(failures) => {
                failures.push_back(now);
                while failures.front().is_some_and(|at| *at <= now - window) {
                    failures.pop_front();
                }
                at_once || failures.len() >= self.policy.failures as usize
            }
            State::Open { .. } | State::HalfOpen { .. } => true,
        };
        if open {
            self.state = State::Open {
                until: now + self.cool_down(),
            };
            self.since = now;
        }
        open
    }
}

/// The providers in priority order, each with its circuit.
type Circuits = Vec<(Arc<dyn SmsProvider>, Mutex<Circuit>)>;

/// Sends through the first provider whose circuit lets the attempt through.
pub struct FailoverSmsProvider {
    providers: Arc<Circuits>,
    clock: Arc<dyn Clock>,
}

/// A reader of a [`FailoverSmsProvider`]'s circuits, kept by the use cases
/// (`Services::provider_circuits`) while the dispatcher sends through the provider.
#[derive(Clone)]
pub struct CircuitBoard {
    providers: Arc<Circuits>,
    clock: Arc<dyn Clock>,
}

impl CircuitBoard {
    /// Each provider's circuit now, in priority order.
    pub fn read(&self) -> Vec<ProviderCircuit> {
        let now = self.clock.now();
        self.providers
            .iter()
            .map(|(provider, circuit)| lock(circuit).status(provider.name(), now))
            .collect()
    }
}

impl FailoverSmsProvider {
    /// `providers` in priority order.
    pub fn new(
        providers: Vec<Arc<dyn SmsProvider>>,
        policy: CircuitPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        Self {
            providers: Arc::new(
                providers
                    .into_iter()
                    .map(|provider| (provider, Mutex::new(Circuit::new(policy, now))))
                    .collect(),
            ),
            clock,
        }
    }

    /// What reads the circuits while this provider sends.
    pub fn circuits(&self) -> CircuitBoard {
        CircuitBoard {
            providers: self.providers.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The first provider that can send on `channel` and may take an attempt now, or when the
    /// first circuit of one reopens.
    fn choose(
        &self,
        channel: Channel,
    ) -> Result<(&dyn SmsProvider, &Mutex<Circuit>), DateTime<Utc>> {
        let now = self.clock.now();
        let mut reopens = DateTime::<Utc>::MAX_UTC;
        let able = self
            .providers
            .iter()
            .filter(|(provider, _)| provider.can_send(channel));
        for (provider, circuit) in able {
            match lock(circuit).admit(now) {
                Admission::Closed => return Ok((provider.as_ref(), circuit)),
                Admission::Probe => {
                    tracing::info!(
                        provider = provider.name(),
                        "circuit half-open: this attempt probes the provider"
                    );
                    return Ok((provider.as_ref(), circuit));
                }
                Admission::Refused(until) => reopens = reopens.min(until),
            }
        }
        Err(reopens)
    }
}

fn lock(circuit: &Mutex<Circuit>) -> std::sync::MutexGuard<'_, Circuit> {
    // A panic elsewhere cannot leave a circuit half-updated: every change is one assignment.
    circuit.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl SmsProvider for FailoverSmsProvider {
    fn name(&self) -> &'static str {
        "failover"
    }

    /// Whether any of the providers can.
    fn can_send(&self, channel: Channel) -> bool {
        self.providers
            .iter()
            .any(|(provider, _)| provider.can_send(channel))
    }

    async fn send(&self, message: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
        if !self.can_send(message.channel) {
            return Err(ProviderError {
                provider: self.name(),
                kind: ProviderErrorKind::Permanent,
                http_status: None,
                code: None,
                message: format!("no provider configured can send {}", message.channel),
                more_info: None,
                retry_after: None,
                partly_sent: None,
            });
        }
        let (provider, circuit) = match self.choose(message.channel) {
            Ok(chosen) => chosen,
            Err(reopens) => {
                return Err(ProviderError {
                    provider: self.name(),
                    kind: ProviderErrorKind::Retryable,
                    http_status: None,
                    code: None,
                    message: "every provider's circuit is open: no provider was called".to_owned(),
                    more_info: None,
                    retry_after: (reopens - self.clock.now()).to_std().ok(),
                    partly_sent: None,
                })
            }
        };
        let result = provider.send(message).await;
        match &result {
            Err(error) if error.is_provider_wide() => {
                let at_once = error.kind == ProviderErrorKind::Account;
                let mut circuit = lock(circuit);
                if circuit.failed(self.clock.now(), at_once) {
                    tracing::warn!(
                        provider = provider.name(),
                        cool_down_seconds = circuit.policy.cool_down.as_secs(),
                        "circuit open: the next attempts go to the next provider"
                    );
                }
            }
            // A refusal of this message shows the provider at work as surely as a success.
            Ok(_) | Err(_) => lock(circuit).succeeded(self.clock.now()),
        }
        result.map_err(|mut error| {
            // Another provider can take the next attempt, which the dispatcher makes only for a
            // retryable failure.
            if error.kind == ProviderErrorKind::Account {
                error.kind = ProviderErrorKind::Retryable;
            }
            error
        })
    }

    /// Ready while any provider is: the others are what failover is for.
    async fn check_ready(&self) -> Result<(), ProviderError> {
        let mut first_error = None;
        for (provider, _) in self.providers.iter() {
            match provider.check_ready().await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_268_800 + seconds, 0).unwrap()
    }

    fn circuit() -> Circuit {
        Circuit::new(
            CircuitPolicy {
                failures: 3,
                window: Duration::from_secs(60),
                cool_down: Duration::from_secs(30),
            },
            t(0),
        )
    }

    #[test]
    fn three_failures_within_the_window_open_the_circuit_for_the_cool_down() {
        let mut circuit = circuit();
        assert!(!circuit.failed(t(0), false));
        assert!(!circuit.failed(t(10), false));
        assert!(circuit.failed(t(20), false));
        assert_eq!(circuit.admit(t(49)), Admission::Refused(t(50)));
        assert_eq!(circuit.admit(t(50)), Admission::Probe);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let mut circuit = circuit();
        circuit.failed(t(0), false);
        circuit.failed(t(30), false);
        assert!(!circuit.failed(t(61), false));
        assert_eq!(circuit.admit(t(61)), Admission::Closed);
    }

    #[test]
    fn an_account_failure_opens_the_circuit_at_once() {
        let mut circuit = circuit();
        assert!(circuit.failed(t(0), true));
        assert_eq!(circuit.admit(t(1)), Admission::Refused(t(30)));
    }

    #[test]
    fn one_probe_at_a_time_and_its_outcome_closes_or_reopens() {
        let mut circuit = circuit();
        circuit.failed(t(0), true);
        assert_eq!(circuit.admit(t(30)), Admission::Probe);
        assert_eq!(circuit.admit(t(31)), Admission::Refused(t(60)));
        assert!(circuit.failed(t(32), false));
        assert_eq!(circuit.admit(t(40)), Admission::Refused(t(62)));

        assert_eq!(circuit.admit(t(62)), Admission::Probe);
        circuit.succeeded(t(62));
        assert_eq!(circuit.admit(t(63)), Admission::Closed);
        // Closed again with a clean count.
        assert!(!circuit.failed(t(64), false));
    }

    #[test]
    fn operators_read_each_state_since_when_and_the_failures_within_the_window() {
        let mut circuit = circuit();
        let read = |circuit: &Circuit, at| circuit.status("twilio", at);
        assert_eq!(read(&circuit, t(5)).state, CircuitState::Closed);
        assert_eq!(read(&circuit, t(5)).since, t(0));
        circuit.failed(t(10), false);
        circuit.failed(t(20), false);
        let closed = read(&circuit, t(25));
        assert_eq!(
            (closed.state, closed.recent_failures, closed.since),
            (CircuitState::Closed, 2, t(0))
        );
        circuit.failed(t(30), false);
        let open = read(&circuit, t(31));
        assert_eq!(
            (open.state, open.since, open.recent_failures, open.probe_at),
            (CircuitState::Open, t(30), 3, Some(t(60)))
        );
        assert_eq!(circuit.admit(t(60)), Admission::Probe);
        assert_eq!(
            (read(&circuit, t(61)).state, read(&circuit, t(61)).since),
            (CircuitState::HalfOpen, t(60))
        );
        circuit.succeeded(t(62));
        let closed = read(&circuit, t(62));
        assert_eq!((closed.state, closed.since), (CircuitState::Closed, t(62)));
        // The failures stay recent for the window, though they no longer count towards opening.
        assert_eq!(closed.recent_failures, 3);
        assert_eq!(read(&circuit, t(85)).recent_failures, 1);
        assert_eq!(read(&circuit, t(91)).recent_failures, 0);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cool_down() {
        let mut circuit = circuit();
        circuit.failed(t(0), true);
        assert_eq!(circuit.admit(t(30)), Admission::Probe);
        assert_eq!(circuit.admit(t(60)), Admission::Probe);
    }
}
