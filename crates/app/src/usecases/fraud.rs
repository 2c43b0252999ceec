//! The fraud guard in front of every one-time code: what the pure guard
//! ([`domain::fraud::FraudGuard`]) needs is read here (counts, blocks, the safe list, the
//! policies' modes, each cached for about a second so that a code costs no extra read), its
//! decision is applied (blocks placed or renewed, the code counted, a non-allow decision
//! logged and counted in the metrics), and the client's own signals (IP velocity) become
//! findings it weighs with the rest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use chrono::{DateTime, TimeDelta, Utc};
use domain::budget::{self, Budgets, PerCountry};
use domain::fraud::{
    signal_baseline_period, Assessment, Block, BlockOrder, CodeCounts, CodeEvent, Decision,
    FraudGuard, LineType, Mode, Policies, Policy, Prefix, Prefixes, Reason, ReasonCode, SafeList,
    SignalKey, Signals,
};
use domain::pumping::hour_of;
use domain::{Amount, MessageId, PhoneNumber, Verification, VerificationId};
use ports::{
    Admission, FraudStore, LoggedDecision, RateLimit, RateLimiter, SpendReservation, StoreError,
};

use crate::observability::metrics::Metrics;
use crate::usecases::guards::SendLimit;

/// How long an instance reuses what it read of the shared state (blocks, safe list, policy
/// modes, a key's counts): an admin's change, or another instance's block, reaches every
/// instance within this, and a code costs no read of its own.
pub const FRAUD_READ_FRESHNESS: TimeDelta = TimeDelta::seconds(1);

/// Cached counts beyond this many keys are pruned of the stale ones: an attack on many
/// prefixes must not grow the cache without bound.
const MAX_CACHED_KEYS: usize = 10_000;

/// How far back what providers charged for a country sets its estimated price per segment.
const CHARGED_PRICE_WINDOW: TimeDelta = TimeDelta::hours(24);

/// How long an instance reuses a country's estimated price: prices change by the month, and a
/// code costs no extra read.
const CHARGED_PRICE_FRESHNESS: TimeDelta = TimeDelta::minutes(5);

/// The guard's settings, as configuration gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FraudConfig {
    /// Thresholds, and the modes configured (`FRAUD_MODE`, `FRAUD_POLICY_*`); the modes an admin
    /// sets at run time (`PUT /v1/fraud/policies`) win over these.
    pub guard: FraudGuard,
    pub ip_velocity: IpVelocity,
    pub budgets: BudgetConfig,
}

/// The daily spend caps and the prices a message's cost is estimated with when providers have
/// not charged for its country lately.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetConfig {
    pub budgets: Budgets,
    /// `SMS_PRICES`: per segment, in the budgets' currency; `*` is required with a budget.
    pub prices: PerCountry,
}

/// Codes asked for from one client address, and from its range (/24 for IPv4, /64 for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpVelocity {
    pub per_address: SendLimit,
    pub per_range: SendLimit,
}

impl Default for IpVelocity {
    /// Over a day, not an hour: a bot spraying codes from one address or one rented range
    /// keeps going hour after hour, and an hourly window would let it through again each hour.
    /// A person asks for a few codes a day; an office or a carrier's shared address that asks
    /// for more raises these (`FRAUD_IP_*`) or watches the policy in `monitor` mode.
    fn default() -> Self {
        Self {
            per_address: SendLimit {
                max: 20,
                window: TimeDelta::hours(24),
            },
            per_range: SendLimit {
                max: 40,
                window: TimeDelta::hours(24),
            },
        }
    }
}

/// What the calling service says of the person asking for a code (`POST /v1/verifications`'s
/// `client_ip`, `user_id`, `trusted`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSignals {
    pub client_ip: Option<IpAddr>,
    /// The calling service's id of its user: kept with each logged decision, and named in
    /// the log lines of what the guard found.
    pub user_id: Option<String>,
    /// The client vouches for a known user: the conversion policies (prefix conversion and
    /// prefix surge) do not judge the request; every other policy does.
    pub trusted: bool,
}

impl ClientSignals {
    /// The client's address, and its range: `/24` for IPv4, `/64` for IPv6 (the smallest
    /// ranges handed to one customer, so one attacker's addresses share it).
    fn addresses(&self) -> Option<(String, String)> {
        let address = self.client_ip?.to_canonical();
        let range = match address {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        };
        Some((address.to_string(), range))
    }
}

/// Why the guard refused a code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FraudRefusal {
    /// The number's line type is refused (`DENY_LINE_TYPES`): no wait helps.
    #[error("codes are not sent to {line_type} numbers")]
    LineType {
        line_type: LineType,
        decision: Decision,
    },
    /// A policy in force blocks the code; `retry_after` when the block heals by itself.
    #[error(
        "codes to this number are blocked by the fraud guard: {}",
        reason_codes(decision)
    )]
    Blocked {
        decision: Decision,
        retry_after: Option<TimeDelta>,
    },
    /// A message (`POST /v1/messages`) would pass a daily budget; `detail` names the
    /// budget's scope, and the day's spend. It rolls over at midnight UTC.
    #[error("{detail}")]
    BudgetExhausted {
        detail: String,
        decision: Decision,
        retry_after: TimeDelta,
    },
}

impl FraudRefusal {
    pub fn decision(&self) -> &Decision {
        match self {
            FraudRefusal::LineType { decision, .. }
            | FraudRefusal::Blocked { decision, .. }
            | FraudRefusal::BudgetExhausted { decision, .. } => decision,
        }
    }
}

fn reason_codes(decision: &Decision) -> String {
    let codes: Vec<&str> = decision
        .reasons
        .iter()
        .map(|reason| reason.code.as_str())
        .collect();
    codes.join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error(transparent)]
    Refused(#[from] FraudRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A code the guard let through: its decision (a verification's `risk`), and the keys its
/// code is counted under.
#[derive(Debug, Clone)]
pub struct Screened {
    pub decision: Decision,
    /// The modes the decision was made with, for the budget's finding added to it.
    policies: Policies,
    keys: Vec<SignalKey>,
    client_ip: Option<String>,
    user_id: Option<String>,
    trusted: bool,
}

/// What every instance reads of the guard's shared state, once a [`FRAUD_READ_FRESHNESS`].
struct SharedRead {
    at: DateTime<Utc>,
    policies: Policies,
    blocks: Arc<[Block]>,
    safe_list: Arc<SafeList>,
}

/// The guard's orchestration over the shared state.
pub struct FraudScreen {
    store: Arc<dyn FraudStore>,
    limiter: Arc<dyn RateLimiter>,
    config: FraudConfig,
    metrics: Arc<Metrics>,
    /// Held across a read, so that the requests of one second share one read.
    shared: tokio::sync::Mutex<Option<SharedRead>>,
    counts: Mutex<CountReads>,
    /// Per prefix: when this instance last placed or renewed its block. Until the next read
    /// of the blocks shows the write, every code to the prefix would ask for it again, each
    /// one a write waiting on the same row.
    block_writes: Mutex<HashMap<Prefix, DateTime<Utc>>>,
    /// Per country: when what providers charged was read, and the price per segment it gave.
    charged_prices: Mutex<ChargedPrices>,
}

/// Per country: when what providers charged was read, and the price per segment it gave.
type ChargedPrices = HashMap<String, (DateTime<Utc>, Option<Amount>)>;

/// One read of counts in flight: its outcome, by key, once it is known.
type CountRead = watch::Receiver<Option<Arc<HashMap<SignalKey, Arc<[CodeCounts]>>>>>;

/// Per signal key: when its hourly counts were read and what they were, or the read of them
/// another request has in flight.
#[derive(Default)]
struct CountReads {
    read: HashMap<SignalKey, (DateTime<Utc>, Arc<[CodeCounts]>)>,
    reading: HashMap<SignalKey, CountRead>,
}

impl CountReads {
    /// `key`'s counts if they were read less than a [`FRAUD_READ_FRESHNESS`] ago. A clock set
    /// back reads again rather than trusting a read from the future.
    fn fresh(&self, key: &SignalKey, now: DateTime<Utc>) -> Option<Arc<[CodeCounts]>> {
        self.read.get(key).and_then(|(read_at, counts)| {
            (now >= *read_at && now - *read_at < FRAUD_READ_FRESHNESS).then(|| counts.clone())
        })
    }

    /// The read of `key` in flight, unless the request reading it went away.
    fn in_flight(&self, key: &SignalKey) -> Option<CountRead> {
        self.reading
            .get(key)
            .filter(|reading| reading.has_changed().is_ok())
            .cloned()
    }

    /// Beyond [`MAX_CACHED_KEYS`], the counts no longer fresh are forgotten: an attack on many
    /// prefixes must not grow the cache without bound.
    fn prune(&mut self, now: DateTime<Utc>) {
        if self.read.len() > MAX_CACHED_KEYS {
            self.read
                .retain(|_, (read_at, _)| now >= *read_at && now - *read_at < FRAUD_READ_FRESHNESS);
        }
        self.reading
            .retain(|_, reading| reading.has_changed().is_ok());
    }
}

/// Gives back `message`'s reservation; a failure is logged.
async fn release_spend(store: &dyn FraudStore, message: MessageId) {
    if let Err(error) = store.release_spend(message).await {
        tracing::warn!(%error, message_id = %message, "cannot give back a budget reservation");
    }
}

/// The decision-log entry of `screened`'s decision on a code to `to`.
fn entry(
    screened: &Screened,
    api_key: &str,
    to: &PhoneNumber,
    verification_id: Option<VerificationId>,
    now: DateTime<Utc>,
) -> LoggedDecision {
    LoggedDecision {
        id: uuid::Uuid::new_v4(),
        at: now,
        to: to.clone(),
        api_key: api_key.to_owned(),
        client_ip: screened.client_ip.clone(),
        user_id: screened.user_id.clone(),
        trusted: screened.trusted,
        verification_id,
        decision: screened.decision.clone(),
    }
}

/// The keys a code to `to` is counted under, whatever the client: its country and prefixes.
fn destination_keys(to: &PhoneNumber, prefixes: &Prefixes) -> [SignalKey; 3] {
    [
        SignalKey::country_of(to),
        SignalKey::prefix(&prefixes.narrow),
        SignalKey::prefix(&prefixes.wide),
    ]
}

/// The policies the guard judges a trusted user's request by: the conversion policies off.
fn trusted(policies: Policies) -> Policies {
    policies
        .with(Policy::PrefixConversion, Mode::Off)
        .with(Policy::PrefixSurge, Mode::Off)
}

impl FraudScreen {
    pub fn new(
        store: Arc<dyn FraudStore>,
        limiter: Arc<dyn RateLimiter>,
        config: FraudConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            limiter,
            config,
            metrics,
            shared: tokio::sync::Mutex::new(None),
            counts: Mutex::default(),
            block_writes: Mutex::default(),
            charged_prices: Mutex::default(),
        }
    }

    /// The daily budgets (`DAILY_BUDGET*`), for what the overview shows against them.
    pub fn budgets(&self) -> &domain::budget::Budgets {
        &self.config.budgets.budgets
    }

    /// The configured modes with an admin's run-time ones over them, read now.
    pub async fn policies(&self) -> Result<Policies, StoreError> {
        let mut policies = self.config.guard.policies;
        for (policy, mode) in self.store.policy_modes().await? {
            policies.set(policy, mode);
        }
        Ok(policies)
    }

    /// Sets policies' modes for every instance; this one reads them again at its next code.
    pub async fn set_policies(
        &self,
        changes: &[(Policy, Mode)],
        now: DateTime<Utc>,
    ) -> Result<Policies, StoreError> {
        for &(policy, mode) in changes {
            self.store.set_policy_mode(policy, mode, now).await?;
            tracing::info!(policy = %policy, mode = %mode, "fraud policy mode set");
        }
        *self.shared.lock().await = None;
        self.policies().await
    }

    /// Blocks, safe list and policies as of at most [`FRAUD_READ_FRESHNESS`] ago.
    async fn shared(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Policies, Arc<[Block]>, Arc<SafeList>), StoreError> {
        let mut shared = self.shared.lock().await;
        if let Some(read) = shared.as_ref() {
            // A clock set back reads again rather than trusting a read from the future.
            if now >= read.at && now - read.at < FRAUD_READ_FRESHNESS {
                return Ok((read.policies, read.blocks.clone(), read.safe_list.clone()));
            }
        }
        let policies = self.policies().await?;
        let blocks: Arc<[Block]> = self.store.blocks(now).await?.into();
        let safe_list = Arc::new(SafeList::new(
            self.store
                .safe_list()
                .await?
                .into_iter()
                .map(|entry| entry.prefix),
        ));
        *shared = Some(SharedRead {
            at: now,
            policies,
            blocks: blocks.clone(),
            safe_list: safe_list.clone(),
        });
        Ok((policies, blocks, safe_list))
    }

    /// The hourly counts of `keys` over the baseline period, each read at most once a
    /// [`FRAUD_READ_FRESHNESS`]: a key another request is reading already is waited for rather
    /// than read again (when its read lapses, every request of that moment would otherwise
    /// read it at once), and the keys left to read are read at once.
    async fn counts(
        &self,
        keys: &[SignalKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Arc<[CodeCounts]>>, StoreError> {
        let mut found: Vec<Option<Arc<[CodeCounts]>>> = vec![None; keys.len()];
        let mut waits = Vec::new();
        let mut mine = Vec::new();
        let sender = {
            let mut reads = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let (sender, receiver) = watch::channel(None);
            for (index, key) in keys.iter().enumerate() {
                if let Some(counts) = reads.fresh(key, now) {
                    found[index] = Some(counts);
                } else if let Some(reading) = reads.in_flight(key) {
                    waits.push((index, reading));
                } else {
                    reads.reading.insert(key.clone(), receiver.clone());
                    mine.push(index);
                }
            }
            (!mine.is_empty()).then_some(sender)
        };
        if let Some(sender) = sender {
            let missing: Vec<SignalKey> = mine.iter().map(|&index| keys[index].clone()).collect();
            let read = self.read_counts(&missing, now).await;
            let mut reads = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            for key in &missing {
                if reads
                    .reading
                    .get(key)
                    .is_some_and(|reading| reading.same_channel(&sender.subscribe()))
                {
                    reads.reading.remove(key);
                }
            }
            let read = read?;
            reads.prune(now);
            for (&index, key) in mine.iter().zip(&missing) {
                let counts = read.get(key).cloned().unwrap_or_default();
                reads.read.insert(key.clone(), (now, counts.clone()));
                found[index] = Some(counts);
            }
            drop(reads);
            // Those waiting for these keys take them; with none waiting, nobody hears.
            let _ = sender.send(Some(Arc::new(read)));
        }
        let mut orphaned = Vec::new();
        for (index, mut reading) in waits {
            let counts = match reading.wait_for(Option::is_some).await {
                Ok(read) => read
                    .as_ref()
                    .map(|read| read.get(&keys[index]).cloned().unwrap_or_default()),
                // The request reading it failed or went away: read it here.
                Err(_) => None,
            };
            match counts {
                Some(counts) => found[index] = Some(counts),
                None => orphaned.push(index),
            }
        }
        if !orphaned.is_empty() {
            let missing: Vec<SignalKey> =
                orphaned.iter().map(|&index| keys[index].clone()).collect();
            let read = self.read_counts(&missing, now).await?;
            let mut reads = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            for (&index, key) in orphaned.iter().zip(&missing) {
                let counts = read.get(key).cloned().unwrap_or_default();
                reads.read.insert(key.clone(), (now, counts.clone()));
                found[index] = Some(counts);
            }
        }
        Ok(found.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// One read of `keys`' hourly counts over the baseline period, by key (a key with no
    /// counts is absent).
    async fn read_counts(
        &self,
        keys: &[SignalKey],
        now: DateTime<Utc>,
    ) -> Result<HashMap<SignalKey, Arc<[CodeCounts]>>, StoreError> {
        let since = hour_of(now) - signal_baseline_period();
        let mut read: HashMap<SignalKey, Vec<CodeCounts>> = HashMap::new();
        for (key, counts) in self.store.code_counts(keys, since).await? {
            read.entry(key).or_default().push(counts);
        }
        Ok(read
            .into_iter()
            .map(|(key, counts)| (key, counts.into()))
            .collect())
    }

    /// Judges a request for a code to `to` at `now`: the code may go (with its decision, to
    /// keep as the verification's `risk`), or it is refused and counted as such.
    pub async fn screen(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        client: &ClientSignals,
        now: DateTime<Utc>,
    ) -> Result<Screened, ScreenError> {
        let prefixes = Prefixes::of(to);
        let mut keys = destination_keys(to, &prefixes).to_vec();
        keys.push(SignalKey::api_key(api_key));
        let addresses = client.addresses();
        if let Some((address, range)) = &addresses {
            keys.push(SignalKey::client_ip(address));
            keys.push(SignalKey::client_ip(range));
        }
        let line_type = LineType::of(to);
        let (policies, blocks, safe_list) = self.shared(now).await?;
        let policies = if client.trusted {
            trusted(policies)
        } else {
            policies
        };
        let (client_findings, client_retry_after) =
            self.client_findings(client, &policies, now).await?;

        let assessment = if Policy::ALL.iter().all(|policy| !policies.is_on(*policy)) {
            // Nothing to judge: not a read more than the counts' write.
            Assessment {
                decision: Decision::allow(),
                blocks: Vec::new(),
                retry_after: None,
            }
        } else {
            let counts = self.counts(&keys[..3], now).await?;
            let guard = FraudGuard {
                policies,
                ..self.config.guard.clone()
            };
            let country = SignalKey::country_of(to).value;
            guard.assess(
                &Signals {
                    to,
                    prefixes: &prefixes,
                    country: &country,
                    safe_list: &safe_list,
                    line_type,
                    blocks: &blocks,
                    country_counts: &counts[0],
                    narrow: &counts[1],
                    wide: &counts[2],
                    client: &client_findings,
                },
                now,
            )
        };
        self.apply_blocks(&assessment.blocks, now).await;
        let Assessment {
            decision,
            retry_after,
            ..
        } = assessment;
        self.count_decision(to, &decision);
        let screened = Screened {
            decision,
            policies,
            keys,
            client_ip: addresses.map(|(address, _)| address),
            user_id: client.user_id.clone(),
            trusted: client.trusted,
        };
        if !screened.decision.is_blocked() {
            return Ok(screened);
        }

        tracing::warn!(
            to = %to.masked(),
            reasons = %reason_codes(&screened.decision),
            user_id = screened.user_id.as_deref(),
            "fraud guard refused a code"
        );
        let refusal = if screened.decision.names(ReasonCode::LineType)
            && policies.mode(Policy::LineType) == Mode::Enforce
        {
            FraudRefusal::LineType {
                line_type,
                decision: screened.decision.clone(),
            }
        } else {
            let ip_wait =
                client_retry_after.filter(|_| policies.mode(Policy::IpVelocity) == Mode::Enforce);
            FraudRefusal::Blocked {
                decision: screened.decision.clone(),
                retry_after: retry_after.max(ip_wait),
            }
        };
        let log = self.log(&screened, api_key, to, None, now);
        let count = self.count(CodeEvent::Refused, &screened, now);
        tokio::join!(log, count);
        Err(refusal.into())
    }

    /// What the client's own policies find: IP velocity, counted in the shared sliding windows
    /// (`RateLimiter`) when the client names its address; and how long until the address may
    /// ask again. Budgets (issue 18, item 6) join here as one more finding.
    async fn client_findings(
        &self,
        client: &ClientSignals,
        policies: &Policies,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Reason>, Option<TimeDelta>), StoreError> {
        let mut findings = Vec::new();
        let mut retry_after = None;
        if let (true, Some((address, range))) =
            (policies.is_on(Policy::IpVelocity), client.addresses())
        {
            let velocity = self.config.ip_velocity;
            let address_key = format!("client-ip:{address}");
            let limits = [
                RateLimit {
                    key: address_key.clone(),
                    max: velocity.per_address.max,
                    window: velocity.per_address.window,
                },
                RateLimit {
                    key: format!("client-ip-range:{range}"),
                    max: velocity.per_range.max,
                    window: velocity.per_range.window,
                },
            ];
            if let Admission::Refused {
                key,
                retry_after: wait,
            } = self.limiter.acquire(&limits, now).await?
            {
                let (what, limit) = if key == address_key {
                    (address, velocity.per_address)
                } else {
                    (range, velocity.per_range)
                };
                findings.push(Reason::new(
                    ReasonCode::IpVelocity,
                    format!(
                        "{what}: more than {} codes asked for in {} seconds",
                        limit.max,
                        limit.window.num_seconds()
                    ),
                ));
                retry_after = Some(wait);
            }
        }
        Ok((findings, retry_after))
    }

    /// The budget policy, once a code's message is known: reserves its estimated cost under
    /// every daily budget it counts against ([`FraudScreen::reserve`]). A budget without room
    /// adds a `budget_exhausted` finding to the decision: refused until the next UTC day when
    /// the policy is enforced, recorded only when monitored.
    pub async fn charge(
        &self,
        screened: &mut Screened,
        api_key: &str,
        to: &PhoneNumber,
        segments: u32,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<(), ScreenError> {
        if !screened.policies.is_on(Policy::Budget) {
            return Ok(());
        }
        let Some(finding) = self.reserve(api_key, to, segments, message, now).await? else {
            return Ok(());
        };
        let mut findings = screened.decision.reasons.clone();
        findings.push(finding);
        let decision = Decision::from_findings(findings, &screened.policies);
        self.metrics
            .fraud_decision(decision.action, Some(ReasonCode::BudgetExhausted));
        screened.decision = decision;
        if !screened.decision.is_blocked() {
            return Ok(());
        }
        tracing::warn!(
            to = %to.masked(),
            reasons = %reason_codes(&screened.decision),
            user_id = screened.user_id.as_deref(),
            "fraud guard refused a code: a daily budget is spent"
        );
        let log = self.log(screened, api_key, to, None, now);
        let count = self.count(CodeEvent::Refused, screened, now);
        tokio::join!(log, count);
        Err(FraudRefusal::Blocked {
            decision: screened.decision.clone(),
            retry_after: Some(budget::until_next_day(now)),
        }
        .into())
    }

    /// The budget policy for a message sent by template or body (`POST /v1/messages`):
    /// reserves its estimated cost under `message`'s id when the policy is on. `Some` finding
    /// when a budget has no room (nothing was reserved); the caller judges it with
    /// [`FraudScreen::judge_spent_budget`] unless the request turns out to be a repeat.
    pub async fn reserve_message(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        segments: u32,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Reason>, StoreError> {
        if !self.config.budgets.budgets.any() {
            return Ok(None);
        }
        let (policies, ..) = self.shared(now).await?;
        if !policies.is_on(Policy::Budget) {
            return Ok(None);
        }
        self.reserve(api_key, to, segments, message, now).await
    }

    /// Judges a message's `budget_exhausted` finding by the budget policy's mode: counted
    /// and logged either way; refused until the next UTC day when the policy is enforced.
    pub async fn judge_spent_budget(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        finding: Reason,
        now: DateTime<Utc>,
    ) -> Result<(), ScreenError> {
        let (policies, ..) = self.shared(now).await?;
        let detail = finding.detail.clone();
        let decision = Decision::from_findings(vec![finding], &policies);
        self.metrics
            .fraud_decision(decision.action, Some(ReasonCode::BudgetExhausted));
        let entry = LoggedDecision {
            id: uuid::Uuid::new_v4(),
            at: now,
            to: to.clone(),
            api_key: api_key.to_owned(),
            client_ip: None,
            user_id: None,
            trusted: false,
            verification_id: None,
            decision: decision.clone(),
        };
        if let Err(error) = self.store.log_decision(&entry).await {
            tracing::warn!(%error, "cannot log a fraud decision");
        }
        if !decision.is_blocked() {
            tracing::info!(to = %to.masked(), "a daily budget is spent; the message went (budget policy monitored)");
            return Ok(());
        }
        tracing::warn!(to = %to.masked(), "message refused: a daily budget is spent");
        Err(FraudRefusal::BudgetExhausted {
            detail,
            decision,
            retry_after: budget::until_next_day(now),
        }
        .into())
    }

    /// Gives back what was reserved for a message that was not stored after all (a repeat
    /// of an earlier request, or a failed write). A failure is logged: the day's spend stays
    /// over-counted by one message's estimate. Without budgets nothing was reserved, and the
    /// database is not asked.
    pub async fn release(&self, message: MessageId) {
        if !self.config.budgets.budgets.any() {
            return;
        }
        release_spend(self.store.as_ref(), message).await;
    }

    /// As [`Self::release`], for a message whose write failed with `error`. When the database
    /// was unavailable the give-back goes on in a task of its own: the request's answer (a
    /// 503) does not wait a second connection timeout for a database that has just failed.
    pub async fn release_after(&self, message: MessageId, error: &StoreError) {
        if !self.config.budgets.budgets.any() {
            return;
        }
        if matches!(error, StoreError::Unavailable(_)) {
            let store = self.store.clone();
            tokio::spawn(async move { release_spend(store.as_ref(), message).await });
        } else {
            release_spend(self.store.as_ref(), message).await;
        }
    }

    /// Gives back the reservations of messages that ended without a provider taking them
    /// (failed for good, expired unsent); forgets those of messages that went. How many
    /// messages' reservations were given back.
    pub async fn settle_spend(&self) -> Result<u64, StoreError> {
        if !self.config.budgets.budgets.any() {
            return Ok(0);
        }
        self.store.settle_spend().await
    }

    /// Reserves a message's estimated cost under every daily budget it counts against
    /// (atomically, in the store, so instances together never pass a cap by more than the
    /// sends in flight), kept under `message` so that it can be given back. The cost is the
    /// country's price per segment times the segments; a call (no segments) is estimated at
    /// one segment's price. `Some` `budget_exhausted` finding when a budget has no room.
    async fn reserve(
        &self,
        api_key: &str,
        to: &PhoneNumber,
        segments: u32,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Reason>, StoreError> {
        let config = &self.config.budgets;
        if !config.budgets.any() {
            return Ok(None);
        }
        let country = SignalKey::country_of(to).value;
        let caps = config.budgets.caps(api_key, &country);
        if caps.is_empty() {
            return Ok(None);
        }
        let price = match self.charged_price(&country, now).await {
            Some(price) => price,
            None => config.prices.get(&country).unwrap_or(Amount::ZERO),
        };
        let cost = budget::estimate(price, segments).unwrap_or(Amount::from_units(i128::MAX));
        let currency = &config.budgets.currency;
        let (scope, spent) = match self
            .store
            .reserve_spend(budget::day_of(now), &caps, cost, message)
            .await?
        {
            SpendReservation::Reserved(after) => {
                for (cap, after) in caps.iter().zip(after) {
                    let before = Amount::from_units(after.units() - cost.units());
                    if budget::crossed_warning(cap.cap, before, after) {
                        tracing::warn!(
                            scope = cap.scope.label(),
                            spent = %after,
                            cap = %cap.cap,
                            currency = %currency,
                            "a daily budget is 80% spent: {}",
                            cap.scope
                        );
                        self.metrics.budget_warning(cap.scope.label());
                    }
                }
                return Ok(None);
            }
            SpendReservation::Exhausted { scope, spent } => (scope, spent),
        };
        let cap = caps
            .iter()
            .find(|cap| cap.scope == scope)
            .map_or(Amount::ZERO, |cap| cap.cap);
        Ok(Some(Reason::new(
            ReasonCode::BudgetExhausted,
            format!(
                "{scope}: {spent} of {cap} {currency} spent today, and this message costs about {cost}"
            ),
        )))
    }

    /// The price per segment providers charged for `country` in the budgets' currency over the
    /// last [`CHARGED_PRICE_WINDOW`], read at most once a [`CHARGED_PRICE_FRESHNESS`]; `None`
    /// when nothing was charged (then `SMS_PRICES` is the estimate). A failed read is logged
    /// and falls back the same way: the reservation that follows reaches the store or fails.
    async fn charged_price(&self, country: &str, now: DateTime<Utc>) -> Option<Amount> {
        {
            let cache = self
                .charged_prices
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((read_at, price)) = cache.get(country) {
                if now >= *read_at && now - *read_at < CHARGED_PRICE_FRESHNESS {
                    return *price;
                }
            }
        }
        let currency = &self.config.budgets.budgets.currency;
        let price = match self
            .store
            .charged_since(country, currency, now - CHARGED_PRICE_WINDOW)
            .await
        {
            Ok((charged, segments)) => budget::price_per_segment(charged, segments),
            Err(error) => {
                tracing::warn!(%error, country, "cannot read what providers charged; SMS_PRICES estimates");
                return None;
            }
        };
        let mut cache = self
            .charged_prices
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() > MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(country.to_owned(), (now, price));
        price
    }

    /// Places or renews the blocks the guard asked for. A failure is logged, not answered:
    /// the decision stands for this request, and the next finds the same.
    async fn apply_blocks(&self, orders: &[BlockOrder], now: DateTime<Utc>) {
        for order in orders {
            if !self.claim_block_write(&order.block().prefix, now) {
                continue;
            }
            let written = match order {
                BlockOrder::Place(block) => self.store.place_block(block).await,
                BlockOrder::Renew(block) => self.store.renew_block(block).await,
            };
            match written {
                Ok(true) => {
                    if let BlockOrder::Place(block) = order {
                        tracing::warn!(prefix = %block.prefix, reasons = ?block.reasons.iter().map(|reason| reason.code.as_str()).collect::<Vec<_>>(), "fraud guard blocked a prefix");
                    }
                }
                // Another instance placed it first, or an admin lifted it meanwhile.
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, prefix = %order.block().prefix, "cannot write a fraud block")
                }
            }
        }
    }

    /// Whether this instance writes `prefix`'s block now: not when it wrote it less than a
    /// [`FRAUD_READ_FRESHNESS`] ago, as the blocks it judged by were read before that write.
    fn claim_block_write(&self, prefix: &Prefix, now: DateTime<Utc>) -> bool {
        let mut writes = self
            .block_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(written) = writes.get(prefix) {
            if now >= *written && now - *written < FRAUD_READ_FRESHNESS {
                return false;
            }
        }
        if writes.len() > MAX_CACHED_KEYS {
            writes.retain(|_, written| now >= *written && now - *written < FRAUD_READ_FRESHNESS);
        }
        writes.insert(prefix.clone(), now);
        true
    }

    /// `fraud_decisions_total{action,reason}`, one per reason (`none` for a plain allow), and
    /// the pumping alarm's own metric for a country surge.
    fn count_decision(&self, to: &PhoneNumber, decision: &Decision) {
        if decision.reasons.is_empty() {
            self.metrics.fraud_decision(decision.action, None);
        }
        for reason in &decision.reasons {
            self.metrics
                .fraud_decision(decision.action, Some(reason.code));
        }
        if decision.names(ReasonCode::CountrySurge) {
            self.metrics
                .pumping_alarm(&format!("+{}", to.calling_code()));
        }
    }

    /// Counts a code that went (`Sent`) or was refused after the guard let it through (a send
    /// limit): one batched write. A failure is logged: a count lost skews a judgement by one.
    pub async fn count(&self, event: CodeEvent, screened: &Screened, now: DateTime<Utc>) {
        if let Err(error) = self.store.count_code(event, &screened.keys, now).await {
            tracing::warn!(%error, event = event.as_str(), "cannot count a code for the fraud guard");
        }
    }

    /// The decision-log entry of a decision that let a code go to `verification` but was not
    /// a plain allow (a monitored finding), for the verification's own write to store with
    /// it; `None` for a plain allow.
    pub fn finding(
        &self,
        screened: &Screened,
        api_key: &str,
        verification: &Verification,
        now: DateTime<Utc>,
    ) -> Option<LoggedDecision> {
        if screened.decision.reasons.is_empty() {
            return None;
        }
        // At debug: in `monitor` mode every code to a range that looks pumped has a finding,
        // and the decision log and `fraud_decisions_total` already hold each one.
        tracing::debug!(
            verification_id = %verification.id,
            action = %screened.decision.action,
            reasons = %reason_codes(&screened.decision),
            user_id = screened.user_id.as_deref(),
            "fraud guard finding recorded; the code went"
        );
        Some(entry(
            screened,
            api_key,
            &verification.to,
            Some(verification.id),
            now,
        ))
    }

    async fn log(
        &self,
        screened: &Screened,
        api_key: &str,
        to: &PhoneNumber,
        verification_id: Option<VerificationId>,
        now: DateTime<Utc>,
    ) {
        let entry = entry(screened, api_key, to, verification_id, now);
        if let Err(error) = self.store.log_decision(&entry).await {
            tracing::warn!(%error, "cannot log a fraud decision");
        }
    }

    /// Counts what a check tells of a verification's codes: its first check (a person is
    /// there) and its approval, in the hour it was started.
    pub async fn count_check(&self, verification: &Verification, approved: bool) {
        let prefixes = Prefixes::of(&verification.to);
        let mut keys = destination_keys(&verification.to, &prefixes).to_vec();
        keys.push(SignalKey::api_key(&verification.api_key));
        let mut events = Vec::new();
        if verification.check_count == 1 {
            events.push(CodeEvent::Checked);
        }
        if approved {
            events.push(CodeEvent::Approved);
        }
        for event in events {
            if let Err(error) = self
                .store
                .count_code(event, &keys, verification.created_at)
                .await
            {
                tracing::warn!(%error, event = event.as_str(), "cannot count a check for the fraud guard");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::fraud::Action;
    use ports::{MockFraudStore, MockRateLimiter};

    use super::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn number(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).unwrap()
    }

    fn screen(store: MockFraudStore, limiter: MockRateLimiter, config: FraudConfig) -> FraudScreen {
        FraudScreen::new(
            Arc::new(store),
            Arc::new(limiter),
            config,
            Arc::new(Metrics::new()),
        )
    }

    /// A store with nothing in it; `reads` times each shared read is expected.
    fn store_read(reads: usize) -> MockFraudStore {
        let mut store = MockFraudStore::new();
        store
            .expect_policy_modes()
            .times(reads)
            .returning(|| Ok(vec![]));
        store.expect_blocks().times(reads).returning(|_| Ok(vec![]));
        store
            .expect_safe_list()
            .times(reads)
            .returning(|| Ok(vec![]));
        store.expect_count_code().returning(|_, _, _| Ok(()));
        store.expect_log_decision().returning(|_| Ok(()));
        store
    }

    #[tokio::test]
    async fn blocks_safe_list_policies_and_counts_are_read_at_most_once_a_second() {
        let mut store = store_read(2);
        // One read of the three destination keys each second.
        store
            .expect_code_counts()
            .times(2)
            .withf(|keys, _| keys.len() == 3)
            .returning(|_, _| Ok(vec![]));
        let screen = screen(store, MockRateLimiter::new(), FraudConfig::default());
        let to = number("+15551234567");
        for after in [0, 500, 999, 1_000] {
            let screened = screen
                .screen(
                    "auth",
                    &to,
                    &ClientSignals::default(),
                    start() + TimeDelta::milliseconds(after),
                )
                .await
                .unwrap();
            assert_eq!(screened.decision, Decision::allow());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_of_one_moment_share_one_read_of_counts_that_lapsed() {
        let mut store = store_read(1);
        // The read is slow: the other requests arrive while it is in flight, and wait for it.
        store.expect_code_counts().times(1).returning(|keys, _| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            Ok(vec![(
                keys[1].clone(),
                CodeCounts {
                    hour: start(),
                    sent: 7,
                    ..CodeCounts::default()
                },
            )])
        });
        let screen = Arc::new(screen(
            store,
            MockRateLimiter::new(),
            FraudConfig::default(),
        ));
        let to = number("+15551234567");
        // Everyone's shared read first, so that the requests below meet at the counts.
        screen.shared(start()).await.unwrap();
        let requests: Vec<_> = (0..6)
            .map(|_| {
                let (screen, to) = (screen.clone(), to.clone());
                tokio::spawn(async move {
                    let keys = destination_keys(&to, &Prefixes::of(&to));
                    screen.counts(&keys, start()).await.unwrap()
                })
            })
            .collect();
        for request in requests {
            let counts = request.await.unwrap();
            assert_eq!(
                counts[1][0].sent, 7,
                "each request sees the one read's counts"
            );
            assert!(counts[0].is_empty() && counts[2].is_empty());
        }
    }

    #[tokio::test]
    async fn a_trusted_user_passes_a_conversion_block_but_not_a_manual_one() {
        let mut store = MockFraudStore::new();
        store.expect_policy_modes().returning(|| Ok(vec![]));
        store.expect_safe_list().returning(|| Ok(vec![]));
        store.expect_code_counts().returning(|_, _| Ok(vec![]));
        store.expect_count_code().returning(|_, _, _| Ok(()));
        store.expect_log_decision().returning(|_| Ok(()));
        store.expect_renew_block().returning(|_| Ok(false));
        store.expect_blocks().returning(|now| {
            Ok(vec![
                Block::new(
                    Prefix::parse("+15551234").unwrap(),
                    vec![Reason::new(ReasonCode::PrefixSurge, "+15551234: 60 codes")],
                    60,
                    now,
                    Default::default(),
                ),
                Block::manual(
                    Prefix::parse("+1555999").unwrap(),
                    "our QA saw pumping",
                    now,
                    None,
                ),
            ])
        });
        let screen = screen(store, MockRateLimiter::new(), FraudConfig::default());
        let trusted = ClientSignals {
            trusted: true,
            ..ClientSignals::default()
        };
        let passed = screen
            .screen("auth", &number("+15551234567"), &trusted, start())
            .await
            .unwrap();
        assert_eq!(passed.decision, Decision::allow());
        let untrusted = screen
            .screen(
                "auth",
                &number("+15551234567"),
                &ClientSignals::default(),
                start(),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            untrusted,
            ScreenError::Refused(FraudRefusal::Blocked { .. })
        ));
        let manual = screen
            .screen("auth", &number("+15559990000"), &trusted, start())
            .await
            .unwrap_err();
        let ScreenError::Refused(refusal) = manual else {
            panic!("expected a refusal, got {manual:?}");
        };
        assert!(refusal.decision().names(ReasonCode::ManualBlock));
    }

    #[tokio::test]
    async fn ip_velocity_counts_the_address_and_its_range_and_says_which_is_full() {
        let mut limiter = MockRateLimiter::new();
        limiter
            .expect_acquire()
            .withf(|limits, _| {
                limits
                    .iter()
                    .map(|limit| limit.key.as_str())
                    .collect::<Vec<_>>()
                    == ["client-ip:2001:db8::7", "client-ip-range:2001:db8::/64"]
            })
            .returning(|limits, _| {
                Ok(Admission::Refused {
                    key: limits[1].key.clone(),
                    retry_after: TimeDelta::seconds(90),
                })
            });
        let mut store = MockFraudStore::new();
        store.expect_policy_modes().returning(|| Ok(vec![]));
        store.expect_blocks().returning(|_| Ok(vec![]));
        store.expect_safe_list().returning(|| Ok(vec![]));
        store.expect_code_counts().returning(|_, _| Ok(vec![]));
        store.expect_log_decision().times(1).returning(|_| Ok(()));
        store
            .expect_count_code()
            .withf(|event, keys, _| {
                *event == CodeEvent::Refused
                    && keys.contains(&SignalKey::client_ip("2001:db8::/64"))
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        let screen = screen(store, limiter, FraudConfig::default());
        let client = ClientSignals {
            client_ip: Some("2001:db8::7".parse().unwrap()),
            ..ClientSignals::default()
        };
        let refused = screen
            .screen("auth", &number("+15551234567"), &client, start())
            .await
            .unwrap_err();
        let ScreenError::Refused(FraudRefusal::Blocked {
            decision,
            retry_after,
        }) = refused
        else {
            panic!("expected a block, got {refused:?}");
        };
        assert_eq!(decision.action, Action::Block);
        assert_eq!(
            decision.reasons,
            [Reason::new(
                ReasonCode::IpVelocity,
                "2001:db8::/64: more than 40 codes asked for in 86400 seconds"
            )]
        );
        assert_eq!(retry_after, Some(TimeDelta::seconds(90)));
    }

    #[test]
    fn an_ipv4_address_mapped_in_ipv6_is_counted_in_its_ipv4_range() {
        let client = ClientSignals {
            client_ip: Some("::ffff:203.0.113.7".parse().unwrap()),
            ..ClientSignals::default()
        };
        assert_eq!(
            client.addresses(),
            Some(("203.0.113.7".to_owned(), "203.0.113.0/24".to_owned()))
        );
    }

    #[tokio::test]
    async fn with_every_policy_off_nothing_is_judged_and_no_counts_are_read() {
        let mut store = store_read(1);
        store.expect_code_counts().never();
        let config = FraudConfig {
            guard: FraudGuard {
                policies: Policies::all(Mode::Off),
                ..FraudGuard::default()
            },
            ..FraudConfig::default()
        };
        let screen = screen(store, MockRateLimiter::new(), config);
        let screened = screen
            .screen(
                "auth",
                &number("+449012345678"),
                &ClientSignals::default(),
                start(),
            )
            .await
            .unwrap();
        assert_eq!(screened.decision, Decision::allow());
    }
}
