//! The dispatcher: claims due messages from the durable queue, sends them through the provider
//! within the caps every instance shares, and records what happened. Several dispatchers (one
//! per instance) share one queue; the store's claim and lease rules keep them from sending a
//! message twice, and its claim budget keeps them, together, within `DISPATCH_CONCURRENCY`
//! and `SENDER_MPS`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Attempt, AttemptOutcome, Message, MessageId, MessageStatus};
use ports::{
    dispatch_order, ClaimBudget, ClaimLimit, ClaimedMessage, Clock, DispatchOutcome, MessageStore,
    OutboundMessage, ProviderError, SenderRate, SentMessageSearch, SmsProvider,
};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::backoff::Backoff;
use super::unrecorded::{self, Unrecorded, UnrecordedOutcomes};
use crate::observability::metrics::Metrics;
use crate::observability::traces;
use crate::wiring::config::DispatchConfig;

/// Most messages claimed in one query, so a large backlog is taken in bites.
const MAX_BATCH: u32 = 100;
/// How long an idle dispatcher sleeps when it cannot ask the store when work is next due.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// How soon to look again when every instance together has `DISPATCH_CONCURRENCY` sends in
/// flight: a provider call returning here wakes this dispatcher at once, one finishing on
/// another instance does not.
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(50);
/// After a claim that took every due message, the least time before the next: a busy API
/// wakes the dispatcher once per queued message, and each claim counts the sends in flight
/// (every instance's), so claiming at each wake-up cost more than the sends it found. At most
/// this much is added to a message's wait, and only while the queue is busy.
const CLAIM_SPACING: Duration = Duration::from_millis(5);
/// `DISPATCH_CONCURRENCY` divided by this is claimed beyond it to wait for a place
/// (`ClaimBudget::reserve`): enough to hand on at once the places of the calls that return
/// while a claim is made.
const RESERVE_SHARE: usize = 5;
/// How long releasing the abandoned sends may take after the grace period.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// How far the provider's clock may be from ours when an unanswered attempt's window is
/// matched against its messages' creation times (whole seconds there).
const ADOPTION_SKEW: TimeDelta = TimeDelta::seconds(5);

pub struct Dispatcher {
    store: Arc<dyn MessageStore>,
    provider: Arc<dyn SmsProvider>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
    /// The sending number or messaging service that `SENDER_MPS` limits.
    sender: String,
    wake: Arc<Notify>,
    /// A permit per message claimed here until its provider call returns.
    in_flight: Arc<Semaphore>,
    /// Messages claimed beyond the free places, each waiting for one here.
    waiting: Arc<Waiting>,
    /// At most this many of them (`ClaimBudget::reserve`).
    reserve: usize,
    /// Signalled when a provider call here returns: room under the shared in-flight cap,
    /// which only a dispatcher stopped by that cap waits for.
    room: Arc<Notify>,
    settling: Arc<Settling>,
    search: Option<Arc<dyn SentMessageSearch>>,
    unrecorded: Arc<UnrecordedOutcomes>,
}

/// The messages whose provider call has returned and whose outcome is being recorded. They
/// are still `sending` in the store until it is, but no longer in flight: the next claim
/// leaves them out of the shared count (`ClaimBudget::settling`), so that recording an
/// outcome (a few milliseconds in a batch) does not hold a place under the cap. The shutdown
/// waits for them.
#[derive(Default)]
struct Settling {
    ids: Mutex<HashSet<MessageId>>,
    emptied: Notify,
}

impl Settling {
    /// Names `id` until the returned guard is dropped, however the recording ends.
    fn enter(self: &Arc<Self>, id: MessageId) -> Settled {
        self.ids().insert(id);
        Settled {
            settling: Arc::clone(self),
            id,
        }
    }

    fn snapshot(&self) -> Vec<MessageId> {
        self.ids().iter().copied().collect()
    }

    /// Returns once no outcome is being recorded.
    async fn drained(&self) {
        loop {
            // Registered before looking, so that an emptying in between is not missed.
            let emptied = self.emptied.notified();
            if self.ids().is_empty() {
                return;
            }
            emptied.await;
        }
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashSet<MessageId>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A message named in [`Settling`] while its outcome is recorded.
struct Settled {
    settling: Arc<Settling>,
    id: MessageId,
}

impl Drop for Settled {
    fn drop(&mut self) {
        let mut ids = self.settling.ids();
        ids.remove(&self.id);
        if ids.is_empty() {
            self.settling.emptied.notify_waiters();
        }
    }
}

/// Messages claimed beyond the free places ([`ClaimBudget::reserve`]), in dispatch order, each
/// waiting for a place here: a returning call hands its place to the first at once. Each is
/// `sending` under its lease meanwhile, so one that waited half its lease is handed back
/// instead (a provider that stopped answering holds every place).
#[derive(Default)]
struct Waiting {
    messages: Mutex<VecDeque<(ClaimedMessage, tokio::time::Instant)>>,
}

impl Waiting {
    fn len(&self) -> usize {
        self.messages().len()
    }

    fn push(&self, claimed: Vec<ClaimedMessage>) {
        if claimed.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut messages = self.messages();
        messages.extend(claimed.into_iter().map(|message| (message, now)));
        messages
            .make_contiguous()
            .sort_by(|(a, _), (b, _)| dispatch_order(a, b));
    }

    /// The first message waiting that was claimed since `fresh_since` (any, if `None`).
    fn next(&self, fresh_since: Option<tokio::time::Instant>) -> Option<ClaimedMessage> {
        let mut messages = self.messages();
        let index = messages
            .iter()
            .position(|(_, at)| fresh_since.is_none_or(|since| *at >= since))?;
        messages.remove(index).map(|(message, _)| message)
    }

    /// The first `count` messages waiting.
    fn take_first(&self, count: usize) -> Vec<ClaimedMessage> {
        let mut messages = self.messages();
        let count = count.min(messages.len());
        messages
            .drain(..count)
            .map(|(message, _)| message)
            .collect()
    }

    /// Every message waiting, or those claimed before `fresh_since`.
    fn take(&self, fresh_since: Option<tokio::time::Instant>) -> Vec<ClaimedMessage> {
        let mut messages = self.messages();
        // Asked before every claim: mostly none is stale, and moving them all is not free.
        if fresh_since.is_some_and(|since| messages.iter().all(|(_, at)| *at >= since)) {
            return Vec::new();
        }
        let (taken, kept) = messages
            .drain(..)
            .partition::<Vec<_>, _>(|(_, at)| fresh_since.is_none_or(|since| *at < since));
        messages.extend(kept);
        taken.into_iter().map(|(message, _)| message).collect()
    }

    fn messages(
        &self,
    ) -> std::sync::MutexGuard<'_, VecDeque<(ClaimedMessage, tokio::time::Instant)>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Messages claimed before this (`None`: none) have waited too long for a place: half their
/// lease.
fn fresh_since(lease: Duration) -> Option<tokio::time::Instant> {
    tokio::time::Instant::now().checked_sub(lease / 2)
}

/// What a batch of claims came to.
enum Batch {
    /// Messages claimed; `drained` when fewer were due than there was room for, so that
    /// claiming again at once would find nothing (it waits for the next wake-up instead: a
    /// claim is a transaction, and most of a busy API's claims were empty ones).
    Claimed {
        drained: bool,
    },
    Empty,
    Limited(ClaimLimit),
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn MessageStore>,
        provider: Arc<dyn SmsProvider>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
        sender: String,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            provider,
            clock,
            in_flight: Arc::new(Semaphore::new(config.concurrency)),
            waiting: Arc::default(),
            reserve: (config.concurrency / RESERVE_SHARE).min(MAX_BATCH as usize),
            room: Arc::new(Notify::new()),
            settling: Arc::default(),
            config,
            sender,
            wake,
            search: None,
            unrecorded: Arc::new(UnrecordedOutcomes::new(unrecorded::CAPACITY, None)),
        }
    }

    /// Counts the outcomes kept while the database was down, and those dropped past the
    /// bound, in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.unrecorded = Arc::new(UnrecordedOutcomes::new(unrecorded::CAPACITY, Some(metrics)));
        self
    }

    /// Before sending again after an attempt that may have reached the provider, asks
    /// `search` whether it did, and adopts the message it finds instead of sending twice.
    pub fn with_sent_message_search(mut self, search: Arc<dyn SentMessageSearch>) -> Self {
        self.search = Some(search);
        self
    }

    /// Runs until `shutdown` turns true, then stops claiming, hands back at once the messages
    /// still waiting for their send time, and gives the sends in flight the grace period to
    /// finish; those still running then are abandoned and handed back too.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            provider = self.provider.name(),
            concurrency = self.config.concurrency,
            sender_mps = self.config.sender_mps,
            "dispatcher started"
        );
        let (abandon, abandoned) = watch::channel(false);
        let mut spaced_until = None;
        let mut backoff = Backoff::new();
        while !*shutdown.borrow() {
            // Outcomes kept while the database was down are written before any claim: once
            // their leases ran out, a claim could take their messages and send them again.
            let claimed = match self.unrecorded.write(self.store.as_ref()).await {
                Ok(_) => self.claim_batch(&shutdown, &abandoned).await,
                Err(error) => Err(error),
            };
            let claimed = match claimed {
                Ok(batch) => {
                    let failures = backoff.succeeded();
                    if failures > 0 {
                        tracing::info!(failures, "the database answers again; dispatching");
                    }
                    batch
                }
                // Neither a wake-up nor a returning send cuts the wait short: while the
                // database is down, they would only make the attempts more frequent.
                Err(error) => {
                    let wait = backoff.failed();
                    tracing::error!(
                        %error,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        unrecorded = self.unrecorded.len(),
                        "cannot claim messages; retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            let mut room_wakes = false;
            let pause = match claimed {
                Batch::Claimed { drained: false } => continue,
                Batch::Claimed { drained: true } => {
                    spaced_until = Some(tokio::time::Instant::now() + CLAIM_SPACING);
                    self.idle_sleep().await
                }
                Batch::Empty => self.idle_sleep().await,
                Batch::Limited(ClaimLimit::InFlight) => {
                    room_wakes = true;
                    IN_FLIGHT_RECHECK
                }
                Batch::Limited(ClaimLimit::SenderRate { until }) => (until - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.room.notified(), if room_wakes => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
            if let Some(until) = spaced_until.take() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        for waiting in self.waiting.take(None) {
            self.worker().release(waiting.claim, &waiting.message).await;
        }
        // Every permit back means every claimed message has been recorded or handed back.
        let all = u32::try_from(self.config.concurrency).unwrap_or(u32::MAX);
        let finished =
            tokio::time::timeout(self.config.shutdown_grace, self.in_flight.acquire_many(all));
        if finished.await.is_err() {
            tracing::warn!(
                "sends still in flight at the end of the grace period; handing them back"
            );
            let _ = abandon.send(true);
            if tokio::time::timeout(RELEASE_TIMEOUT, self.in_flight.acquire_many(all))
                .await
                .is_err()
            {
                tracing::error!("cannot hand back every message; their leases will run out");
            }
        }
        if tokio::time::timeout(RELEASE_TIMEOUT, self.settling.drained())
            .await
            .is_err()
        {
            tracing::error!("cannot record every outcome; those messages will be sent again when their leases run out");
        }
        if !self.unrecorded.is_empty() {
            let written =
                tokio::time::timeout(RELEASE_TIMEOUT, self.unrecorded.write(self.store.as_ref()))
                    .await;
            if !matches!(written, Ok(Ok(_))) {
                tracing::error!(
                    unrecorded = self.unrecorded.len(),
                    "cannot record the outcomes kept while the database was down; those messages will be sent again when their leases run out"
                );
            }
        }
        tracing::info!("dispatcher stopped");
    }

    /// Claims as many due messages as there are free send slots here and room in the shared
    /// caps, and the reserve's missing ones (waiting for one slot, or for a reserve to refill,
    /// if there is neither), and starts sending those that have a place.
    async fn claim_batch(
        &self,
        shutdown: &watch::Receiver<bool>,
        abandoned: &watch::Receiver<bool>,
    ) -> Result<Batch, ports::StoreError> {
        let mut permits = Vec::new();
        loop {
            if let Some(since) = fresh_since(self.config.lease) {
                for stale in self.waiting.take(Some(since)) {
                    self.worker().release(stale.claim, &stale.message).await;
                }
            }
            while permits.len() < MAX_BATCH as usize {
                match self.in_flight.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if !permits.is_empty() || self.waiting.len() < self.reserve {
                break;
            }
            tokio::select! {
                permit = self.in_flight.clone().acquire_owned() => match permit {
                    Ok(permit) => permits.push(permit),
                    Err(_) => return Ok(Batch::Empty),
                },
                // A place handed on to a waiting message: the reserve has room again.
                _ = self.room.notified() => {}
                // Every place held that long: the waiting messages' leases are running out.
                _ = tokio::time::sleep(self.config.lease / 4) => {}
                // No claim once shutdown has begun.
                _ = signalled(shutdown.clone()) => return Ok(Batch::Empty),
            }
        }
        let requested = permits.len() + self.reserve.saturating_sub(self.waiting.len());
        let budget = ClaimBudget {
            limit: u32::try_from(requested).unwrap_or(MAX_BATCH),
            lease: self.config.lease,
            max_in_flight: Some(u32::try_from(self.config.concurrency).unwrap_or(u32::MAX)),
            reserve: u32::try_from(self.reserve).unwrap_or(MAX_BATCH),
            settling: self.settling.snapshot(),
            sender_rate: self.config.sender_mps.map(|per_second| SenderRate {
                sender: self.sender.clone(),
                per_second,
            }),
            max_attempts: Some(self.config.retry.max_attempts),
        };
        let claimed = self.store.claim_within(self.clock.now(), &budget).await?;
        let batch = match (claimed.messages.is_empty(), claimed.limited_by) {
            (false, limit) => Batch::Claimed {
                drained: limit.is_none() && claimed.messages.len() < requested,
            },
            (true, None) => Batch::Empty,
            (true, Some(limit)) => Batch::Limited(limit),
        };
        // The count held the waiting messages: those it found over the cap go on waiting.
        let waiting = i64::try_from(self.waiting.len()).unwrap_or(i64::MAX);
        let mut placed = self.waiting.take_first(
            usize::try_from(waiting.saturating_add(claimed.places).clamp(0, waiting)).unwrap_or(0),
        );
        let mut messages = claimed.messages;
        let unplaced = messages.split_off(
            usize::try_from(claimed.places.max(0))
                .unwrap_or(usize::MAX)
                .min(messages.len()),
        );
        placed.extend(messages);
        placed.sort_by(dispatch_order);
        let worker = self.worker();
        let mut placed = placed.into_iter();
        // The places lead: `zip` takes from its first iterator before it finds the second
        // empty, and a message taken so would be neither sent nor waiting until its lease ran out.
        for (permit, claim) in permits.into_iter().zip(placed.by_ref()) {
            worker.start(claim, permit, shutdown, abandoned);
        }
        self.waiting.push(placed.chain(unplaced).collect());
        Ok(batch)
    }

    /// The worker sending this dispatcher's messages.
    fn worker(&self) -> Worker {
        Worker {
            store: self.store.clone(),
            provider: self.provider.clone(),
            clock: self.clock.clone(),
            config: self.config,
            room: self.room.clone(),
            wake: self.wake.clone(),
            settling: self.settling.clone(),
            waiting: self.waiting.clone(),
            search: self.search.clone(),
            unrecorded: self.unrecorded.clone(),
        }
    }

    /// How long an idle dispatcher may sleep: until the next retry is due, at most the poll
    /// interval (the safety net for a missed wake-up).
    async fn idle_sleep(&self) -> Duration {
        match self.store.next_due_at().await {
            Ok(Some(due)) => (due - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(_) => STORE_ERROR_BACKOFF,
        }
    }
}

/// Completes once the flag is true; never if its sender is gone without setting it.
async fn signalled(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[derive(Clone)]
struct Worker {
    store: Arc<dyn MessageStore>,
    provider: Arc<dyn SmsProvider>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
    room: Arc<Notify>,
    wake: Arc<Notify>,
    settling: Arc<Settling>,
    waiting: Arc<Waiting>,
    search: Option<Arc<dyn SentMessageSearch>>,
    unrecorded: Arc<UnrecordedOutcomes>,
}

impl Worker {
    /// Sends `claim` in a task of its own, holding `permit`, its place under the cap.
    fn start(
        &self,
        claim: ClaimedMessage,
        permit: OwnedSemaphorePermit,
        shutdown: &watch::Receiver<bool>,
        abandoned: &watch::Receiver<bool>,
    ) {
        let span = tracing::info_span!(
            "send",
            message_id = %claim.message.id,
            to = %claim.message.to.masked(),
            attempt = claim.message.attempt_count,
            request_id = claim.message.request_id.as_deref(),
        );
        // A child of the request that queued it, on whichever instance that was.
        traces::continue_from(&span, claim.message.traceparent.as_deref());
        let worker = self.clone();
        let (shutdown, abandoned) = (shutdown.clone(), abandoned.clone());
        tokio::spawn(
            async move {
                let requeued = worker.process(claim, permit, shutdown, abandoned).await;
                // A retry is due later: the dispatcher may be asleep past its time.
                if requeued {
                    worker.wake.notify_one();
                }
            }
            .instrument(span),
        );
    }

    /// Waits for the message's send time, sends it, and records the outcome. A shutdown before
    /// the send time, or the end of the grace period during the call, hands it back instead.
    /// Returns whether the dispatcher has work because of it: the message went back to the
    /// queue for a retry, or its outcome waits for the database. `permit` is its place
    /// under the concurrency cap, given up as soon as the provider call is over.
    async fn process(
        &self,
        ClaimedMessage {
            message,
            claim,
            send_at,
        }: ClaimedMessage,
        permit: OwnedSemaphorePermit,
        shutdown: watch::Receiver<bool>,
        abandoned: watch::Receiver<bool>,
    ) -> bool {
        // The next waiting message is started with the same receivers.
        let receivers = (shutdown.clone(), abandoned.clone());
        if let Ok(wait) = (send_at - self.clock.now()).to_std() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = signalled(shutdown) => {
                    self.release(claim, &message).await;
                    self.free(permit);
                    return false;
                }
            }
        }
        let started_at = self.clock.now();
        let (attempt, outcome) = if message.is_stale(started_at) {
            (None, DispatchOutcome::Expired)
        } else if let Some((attempt, outcome)) = self.adopt(&message, started_at).await {
            (Some(attempt), outcome)
        } else {
            let outbound = outbound(&message, started_at);
            // Only exported: a span of its own would cost the log's formatting per send.
            let call = if traces::exporting() {
                tracing::info_span!("provider call", otel.kind = "client", channel = %message.channel)
            } else {
                tracing::Span::none()
            };
            let result = tokio::select! {
                result = self.provider.send(&outbound).instrument(call) => result,
                // The call's outcome is unknown: sent again later, at least once.
                _ = signalled(abandoned) => {
                    self.release(claim, &message).await;
                    self.free(permit);
                    return false;
                }
            };
            let finished_at = self.clock.now();
            let (attempt, outcome) = self.judge(&message, started_at, finished_at, result);
            (Some(attempt), outcome)
        };
        let status = outcome.status();
        // Each send is logged once, here, with the provider's id (the adapters log at debug).
        let provider_sid = match &outcome {
            DispatchOutcome::Sent { provider_sid, .. } => Some(provider_sid.clone()),
            _ => None,
        };
        // Settling before the permit goes: a claim that finds the place free must also find
        // the message among those it leaves out of the count.
        let settled = self.settling.enter(message.id);
        self.hand_on(permit, &receivers.0, &receivers.1);
        let finished_at = self.clock.now();
        let recorded = self
            .store
            .finish(
                claim,
                message.id,
                attempt.clone(),
                outcome.clone(),
                finished_at,
            )
            .await;
        drop(settled);
        match recorded {
            Ok(true) => {
                tracing::info!(%status, provider_sid, "message dispatched");
                status == MessageStatus::Queued
            }
            Ok(false) => {
                tracing::warn!("claim lost before the outcome was recorded");
                false
            }
            // Kept until the database answers again, so that the message is not sent twice;
            // should it be dropped, the lease runs out and it is claimed again: at least once.
            Err(error @ ports::StoreError::Unavailable(_)) => {
                tracing::error!(%error, %status, provider_sid, "cannot record the outcome of a send");
                self.unrecorded.keep(Unrecorded {
                    claim,
                    id: message.id,
                    attempt,
                    outcome,
                    finished_at,
                });
                // The dispatcher writes it as soon as the database answers again.
                true
            }
            // The lease will run out and the message be claimed again: at least once.
            Err(error) => {
                tracing::error!(%error, "cannot record the outcome of a send");
                true
            }
        }
    }

    /// Gives up the message's place under the cap and wakes a dispatcher waiting for one.
    fn free(&self, permit: OwnedSemaphorePermit) {
        drop(permit);
        self.room.notify_one();
    }

    /// Hands the message's place to the first message waiting for one, unless shutdown has
    /// begun, or gives it up; either way the dispatcher may claim (a place, or the reserve).
    fn hand_on(
        &self,
        permit: OwnedSemaphorePermit,
        shutdown: &watch::Receiver<bool>,
        abandoned: &watch::Receiver<bool>,
    ) {
        let next = if *shutdown.borrow() {
            None
        } else {
            self.waiting.next(fresh_since(self.config.lease))
        };
        match next {
            Some(next) => {
                self.start(next, permit, shutdown, abandoned);
                self.room.notify_one();
            }
            None => self.free(permit),
        }
    }

    async fn release(&self, claim: ports::ClaimToken, message: &Message) {
        match self
            .store
            .release(claim, message.id, self.clock.now())
            .await
        {
            Ok(true) => {
                tracing::info!(message_id = %message.id, "message handed back to the queue")
            }
            Ok(false) => tracing::warn!("claim lost before the message was handed back"),
            Err(error) => {
                tracing::error!(%error, "cannot hand the message back; its lease will run out")
            }
        }
    }

    /// After an attempt that may have reached the provider, the message it accepted then, if
    /// the provider's list shows one: adopted (`sent` with its id) instead of sending twice.
    /// Asked after an `ambiguous` attempt, and after a `lost` one of a one-time code: a code's
    /// body is unique, so the lease's whole span is a safe window, where an ordinary message
    /// with a common body could be taken for another one sent meanwhile. Any failure to ask
    /// sends as before: at least once.
    async fn adopt(
        &self,
        message: &Message,
        started_at: DateTime<Utc>,
    ) -> Option<(Attempt, DispatchOutcome)> {
        let search = self.search.as_ref()?;
        if message.attempt_count < 2 {
            return None;
        }
        let attempts = match self.store.attempts(message.id).await {
            Ok(attempts) => attempts,
            Err(error) => {
                tracing::warn!(%error, "cannot read the earlier attempts; sending");
                return None;
            }
        };
        let last = attempts.last()?;
        let uncertain = match last.outcome {
            AttemptOutcome::Ambiguous => last.provider.as_deref() == Some(search.provider()),
            AttemptOutcome::Lost => message.verification_id.is_some(),
            _ => false,
        };
        if !uncertain {
            return None;
        }
        let found = search
            .find_sent(
                &outbound(message, started_at),
                last.started_at - ADOPTION_SKEW,
                last.finished_at + ADOPTION_SKEW,
            )
            .await;
        let receipt = match found {
            Ok(Some(receipt)) => receipt,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, "cannot ask whether an earlier attempt was accepted; sending");
                return None;
            }
        };
        tracing::info!(
            provider_sid = %receipt.provider_sid,
            "an earlier unanswered attempt was accepted; adopted instead of sending again"
        );
        Some((
            Attempt {
                number: message.attempt_count,
                provider: Some(receipt.provider.to_owned()),
                started_at,
                finished_at: self.clock.now(),
                outcome: AttemptOutcome::Adopted,
                http_status: None,
                error_code: None,
                error_message: None,
                traceparent: traces::current_traceparent(),
            },
            DispatchOutcome::Sent {
                provider: receipt.provider.to_owned(),
                provider_sid: receipt.provider_sid,
                segments: receipt.segments,
                price: receipt.price,
            },
        ))
    }

    /// Turns the provider's answer into the attempt record and the message's next step. Only a
    /// retryable failure is retried: an account failure needs an operator, and the failover
    /// provider already reports one as retryable when another provider can take over.
    fn judge(
        &self,
        message: &Message,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        result: Result<ports::ProviderReceipt, ProviderError>,
    ) -> (Attempt, DispatchOutcome) {
        let attempt = |outcome, provider: &str, error: Option<&ProviderError>| Attempt {
            number: message.attempt_count,
            provider: Some(provider.to_owned()),
            started_at,
            finished_at,
            outcome,
            http_status: error.and_then(|e| e.http_status),
            error_code: error.and_then(|e| e.code.clone()),
            error_message: error.map(|e| e.message.clone()),
            // The send span's (this is run within it), for what comes of the send to link to.
            traceparent: traces::current_traceparent(),
        };
        match result {
            Ok(receipt) => (
                attempt(AttemptOutcome::Sent, receipt.provider, None),
                DispatchOutcome::Sent {
                    provider: receipt.provider.to_owned(),
                    provider_sid: receipt.provider_sid,
                    segments: receipt.segments,
                    price: receipt.price,
                },
            ),
            Err(error)
                if error.is_retryable()
                    && self.config.retry.allows_another(message.attempt_count) =>
            {
                let delay = self.config.retry.delay(
                    message.attempt_count,
                    rand::random::<f64>(),
                    error.retry_after,
                );
                // The delay is at most RETRY_CAP_SECONDS; should it not fit, retry at once.
                let at = TimeDelta::from_std(delay)
                    .ok()
                    .and_then(|delay| finished_at.checked_add_signed(delay))
                    .unwrap_or(finished_at);
                (
                    attempt(failed_outcome(&error), error.provider, Some(&error)),
                    DispatchOutcome::Retry {
                        at,
                        error_code: error.code.clone(),
                        error_message: error.message.clone(),
                    },
                )
            }
            Err(error) => {
                // Never retried (`is_retryable` says so): what went out is recorded instead.
                let outcome = match &error.partly_sent {
                    Some(sent) => DispatchOutcome::PartlySent {
                        provider: sent.provider.to_owned(),
                        provider_sid: sent.provider_sid.clone(),
                        price: sent.price.clone(),
                        error_code: error.code.clone(),
                        error_message: error.message.clone(),
                    },
                    None => DispatchOutcome::Failed {
                        error_code: error.code.clone(),
                        error_message: error.message.clone(),
                    },
                };
                (
                    attempt(failed_outcome(&error), error.provider, Some(&error)),
                    outcome,
                )
            }
        }
    }
}

/// How a failed attempt is recorded: an unanswered one apart, since it may have been sent.
fn failed_outcome(error: &ProviderError) -> AttemptOutcome {
    if error.is_ambiguous() {
        AttemptOutcome::Ambiguous
    } else if error.is_retryable() {
        AttemptOutcome::RetryableError
    } else {
        AttemptOutcome::PermanentError
    }
}

fn outbound(message: &Message, now: DateTime<Utc>) -> OutboundMessage {
    OutboundMessage {
        message_id: message.id,
        to: message.to.clone(),
        channel: message.channel,
        body: message.body.clone(),
        locale: message.locale.clone(),
        content_sid: message.content_sid.clone(),
        validity: message
            .send_before
            .and_then(|deadline| (deadline - now).to_std().ok()),
        sensitive: message.is_sensitive(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::{Channel, MessageId, MessageStatus, PhoneNumber, Priority, RetryPolicy};
    use ports::{
        ClaimToken, MockClock, MockMessageStore, MockSmsProvider, ProviderErrorKind,
        ProviderReceipt,
    };

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn claimed(attempt_count: u32, send_before: Option<DateTime<Utc>>) -> ClaimedMessage {
        ClaimedMessage {
            message: Message {
                id: MessageId::generate(),
                to: PhoneNumber::parse("+15551234567").unwrap(),
                channel: Channel::Sms,
                template: None,
                body: "Hello".into(),
                locale: None,
                content_sid: None,
                sensitive: false,
                segments: 1,
                priority: Priority::Normal,
                status: MessageStatus::Sending,
                api_key: "auth".into(),
                idempotency_key: None,
                idempotency_fingerprint: None,
                verification_id: None,
                send_before,
                provider: None,
                provider_sid: None,
                error_code: None,
                error_message: None,
                price: None,
                attempt_count,
                next_attempt_at: now(),
                request_id: Some("req-1".into()),
                traceparent: None,
                created_at: now(),
                updated_at: now(),
            },
            claim: ClaimToken(7),
            send_at: now(),
        }
    }

    /// A shutdown flag that never rises.
    fn running() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    fn raised() -> watch::Receiver<bool> {
        let (flag, receiver) = watch::channel(true);
        drop(flag);
        receiver
    }

    fn provider_error(kind: ProviderErrorKind, status: u16, code: &str) -> ProviderError {
        ProviderError {
            provider: "twilio",
            kind,
            http_status: Some(status),
            code: Some(code.into()),
            message: format!("error {code}"),
            more_info: None,
            retry_after: None,
            partly_sent: None,
        }
    }

    fn worker(provider: MockSmsProvider, store: MockMessageStore) -> Worker {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Worker {
            store: Arc::new(store),
            provider: Arc::new(provider),
            clock: Arc::new(clock),
            config: DispatchConfig {
                concurrency: 1,
                poll_interval: Duration::from_secs(5),
                lease: Duration::from_secs(60),
                retry: RetryPolicy::default(),
                sender_mps: None,
                shutdown_grace: Duration::from_secs(10),
            },
            room: Arc::default(),
            wake: Arc::default(),
            settling: Arc::default(),
            waiting: Arc::default(),
            search: None,
            unrecorded: Arc::new(UnrecordedOutcomes::new(10, None)),
        }
    }

    /// A dispatcher over `store` and `provider`, on the test clock.
    fn dispatcher(
        store: MockMessageStore,
        provider: Arc<dyn SmsProvider>,
        config: DispatchConfig,
    ) -> Dispatcher {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Dispatcher::new(
            Arc::new(store),
            provider,
            Arc::new(clock),
            config,
            "+15550000000".into(),
            Arc::new(Notify::new()),
        )
    }

    /// Twilio's acceptance of a send, as `sid`.
    fn receipt(sid: &str) -> ProviderReceipt {
        ProviderReceipt {
            provider: "twilio",
            provider_sid: sid.into(),
            segments: None,
            price: None,
        }
    }

    /// A place under the concurrency cap, for a worker driven directly.
    fn place() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    fn provider_answering(result: Result<ProviderReceipt, ProviderError>) -> MockSmsProvider {
        let mut provider = MockSmsProvider::new();
        provider
            .expect_send()
            .times(1)
            .returning(move |_| result.clone());
        provider
    }

    /// A store that expects exactly one `finish` and checks it with `check`.
    fn store_expecting(
        check: impl Fn(&Option<Attempt>, &DispatchOutcome) + Send + Sync + 'static,
    ) -> MockMessageStore {
        let mut store = MockMessageStore::new();
        store
            .expect_finish()
            .times(1)
            .returning(move |claim, _, attempt, outcome, _| {
                assert_eq!(claim, ClaimToken(7));
                check(&attempt, &outcome);
                Ok(true)
            });
        store
    }

    #[tokio::test]
    async fn an_accepted_message_is_recorded_as_sent_with_the_provider_sid_and_price() {
        let provider = provider_answering(Ok(ProviderReceipt {
            provider: "twilio",
            provider_sid: "SM1".into(),
            segments: Some(1),
            price: Some(ports::Price {
                amount: "-0.00790".into(),
                currency: "USD".into(),
            }),
        }));
        let store = store_expecting(|attempt, outcome| {
            assert_eq!(attempt.as_ref().unwrap().outcome, AttemptOutcome::Sent);
            assert_eq!(
                attempt.as_ref().unwrap().provider.as_deref(),
                Some("twilio")
            );
            assert_eq!(
                outcome,
                &DispatchOutcome::Sent {
                    provider: "twilio".into(),
                    provider_sid: "SM1".into(),
                    segments: Some(1),
                    price: Some(ports::Price {
                        amount: "-0.00790".into(),
                        currency: "USD".into(),
                    }),
                }
            );
        });
        worker(provider, store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn a_temporary_failure_is_queued_again_with_backoff() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Retryable,
            503,
            "503",
        )));
        let store = store_expecting(|attempt, outcome| {
            let attempt = attempt.as_ref().unwrap();
            assert_eq!(attempt.outcome, AttemptOutcome::RetryableError);
            assert_eq!(attempt.http_status, Some(503));
            let DispatchOutcome::Retry { at, .. } = outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            // Second attempt: full jitter under a 4 s ceiling.
            assert!(*at >= now() && *at <= now() + TimeDelta::seconds(4), "{at}");
        });
        worker(provider, store)
            .process(claimed(2, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn an_unanswered_call_is_recorded_as_ambiguous_and_retried() {
        let mut error = provider_error(ProviderErrorKind::Ambiguous, 0, "none");
        error.http_status = None;
        error.code = None;
        let store = store_expecting(|attempt, outcome| {
            assert_eq!(attempt.as_ref().unwrap().outcome, AttemptOutcome::Ambiguous);
            assert!(
                matches!(outcome, DispatchOutcome::Retry { .. }),
                "{outcome:?}"
            );
        });
        worker(provider_answering(Err(error)), store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    /// An ordinary message's body may be common: a lost attempt's whole lease is too wide a
    /// window to tell its message from another, so it is sent again without asking.
    #[tokio::test]
    async fn an_ordinary_message_after_a_lost_attempt_is_sent_without_asking() {
        let mut search = ports::MockSentMessageSearch::new();
        search.expect_provider().return_const("twilio");
        search.expect_find_sent().never();
        let mut store = store_expecting(|attempt, _| {
            assert_eq!(attempt.as_ref().unwrap().outcome, AttemptOutcome::Sent);
        });
        store.expect_attempts().returning(|_| {
            Ok(vec![Attempt {
                number: 1,
                provider: None,
                started_at: now() - TimeDelta::seconds(60),
                finished_at: now(),
                outcome: AttemptOutcome::Lost,
                http_status: None,
                error_code: None,
                error_message: Some("the worker sending it was lost".into()),
                traceparent: None,
            }])
        });
        let provider = provider_answering(Ok(receipt("SM4")));
        let worker = Worker {
            search: Some(Arc::new(search)),
            ..worker(provider, store)
        };
        worker
            .process(claimed(2, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn a_longer_retry_after_is_honoured() {
        let mut error = provider_error(ProviderErrorKind::Retryable, 429, "20429");
        error.retry_after = Some(Duration::from_secs(120));
        let store = store_expecting(|_, outcome| {
            let DispatchOutcome::Retry { at, error_code, .. } = outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            assert_eq!(*at, now() + TimeDelta::seconds(120));
            assert_eq!(error_code.as_deref(), Some("20429"));
        });
        worker(provider_answering(Err(error)), store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn a_retry_after_beyond_retry_cap_seconds_waits_the_cap() {
        for asked in [Duration::from_secs(999_999), Duration::from_secs(u64::MAX)] {
            let mut error = provider_error(ProviderErrorKind::Retryable, 429, "20429");
            error.retry_after = Some(asked);
            let store = store_expecting(|_, outcome| {
                let DispatchOutcome::Retry { at, .. } = outcome else {
                    panic!("expected a retry, got {outcome:?}");
                };
                assert_eq!(*at, now() + TimeDelta::seconds(300));
            });
            worker(provider_answering(Err(error)), store)
                .process(claimed(1, None), place(), running(), running())
                .await;
        }
    }

    #[tokio::test]
    async fn a_permanent_failure_fails_at_once_with_its_code() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Permanent,
            400,
            "21211",
        )));
        let store = store_expecting(|attempt, outcome| {
            assert_eq!(
                attempt.as_ref().unwrap().outcome,
                AttemptOutcome::PermanentError
            );
            assert_eq!(
                outcome,
                &DispatchOutcome::Failed {
                    error_code: Some("21211".into()),
                    error_message: "error 21211".into()
                }
            );
        });
        worker(provider, store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn an_account_failure_of_the_only_provider_fails_at_once() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Account,
            401,
            "20003",
        )));
        let store = store_expecting(|attempt, outcome| {
            let attempt = attempt.as_ref().unwrap();
            assert_eq!(attempt.outcome, AttemptOutcome::PermanentError);
            assert_eq!(attempt.provider.as_deref(), Some("twilio"));
            assert!(
                matches!(outcome, DispatchOutcome::Failed { error_code: Some(code), .. } if code == "20003"),
                "{outcome:?}"
            );
        });
        worker(provider, store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    /// Even a failure that alone would be retried: a retry would repeat the parts that went out.
    #[tokio::test]
    async fn a_partly_sent_message_fails_at_once_recording_what_went_out() {
        let mut error = provider_error(ProviderErrorKind::Retryable, 200, "1");
        error.provider = "vonage";
        error.partly_sent = Some(Box::new(ProviderReceipt {
            provider: "vonage",
            provider_sid: "0A1".into(),
            segments: Some(2),
            price: Some(ports::Price {
                amount: "0.0333".into(),
                currency: "EUR".into(),
            }),
        }));
        let store = store_expecting(|attempt, outcome| {
            let attempt = attempt.as_ref().unwrap();
            assert_eq!(attempt.outcome, AttemptOutcome::PermanentError);
            assert_eq!(attempt.provider.as_deref(), Some("vonage"));
            assert_eq!(
                outcome,
                &DispatchOutcome::PartlySent {
                    provider: "vonage".into(),
                    provider_sid: "0A1".into(),
                    price: Some(ports::Price {
                        amount: "0.0333".into(),
                        currency: "EUR".into(),
                    }),
                    error_code: Some("1".into()),
                    error_message: "error 1".into(),
                }
            );
        });
        worker(provider_answering(Err(error)), store)
            .process(claimed(1, None), place(), running(), running())
            .await;
    }

    #[tokio::test]
    async fn the_last_attempt_fails_instead_of_retrying() {
        let provider = provider_answering(Err(provider_error(
            ProviderErrorKind::Retryable,
            500,
            "500",
        )));
        let store = store_expecting(|_, outcome| {
            assert!(
                matches!(outcome, DispatchOutcome::Failed { .. }),
                "{outcome:?}"
            );
        });
        worker(provider, store)
            .process(
                claimed(RetryPolicy::default().max_attempts, None),
                place(),
                running(),
                running(),
            )
            .await;
    }

    #[tokio::test]
    async fn an_expired_code_is_never_sent() {
        let mut provider = MockSmsProvider::new();
        provider.expect_send().never();
        let store = store_expecting(|attempt, outcome| {
            assert!(attempt.is_none());
            assert_eq!(outcome, &DispatchOutcome::Expired);
        });
        worker(provider, store)
            .process(
                claimed(1, Some(now() - TimeDelta::seconds(1))),
                place(),
                running(),
                running(),
            )
            .await;
    }

    #[tokio::test]
    async fn a_code_is_sent_with_its_remaining_lifetime_as_validity() {
        let mut provider = MockSmsProvider::new();
        provider
            .expect_send()
            .withf(|message| message.validity == Some(Duration::from_secs(300)))
            .times(1)
            .returning(|_| Ok(receipt("SM2")));
        let store = store_expecting(|_, _| {});
        worker(provider, store)
            .process(
                claimed(1, Some(now() + TimeDelta::minutes(5))),
                place(),
                running(),
                running(),
            )
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waits_for_its_send_time_before_the_provider_call() {
        let provider = provider_answering(Ok(receipt("SM3")));
        let store = store_expecting(|_, outcome| {
            assert!(matches!(outcome, DispatchOutcome::Sent { .. }));
        });
        let mut paced = claimed(1, None);
        paced.send_at = now() + TimeDelta::milliseconds(750);
        let before = tokio::time::Instant::now();
        worker(provider, store)
            .process(paced, place(), running(), running())
            .await;
        assert!(before.elapsed() >= Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_before_the_send_time_hands_the_message_back_unsent() {
        let mut provider = MockSmsProvider::new();
        provider.expect_send().never();
        let mut store = MockMessageStore::new();
        store.expect_finish().never();
        store
            .expect_release()
            .withf(|claim, _, _| *claim == ClaimToken(7))
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut paced = claimed(1, None);
        paced.send_at = now() + TimeDelta::seconds(1);
        worker(provider, store)
            .process(paced, place(), raised(), running())
            .await;
    }

    /// A provider call that never answers.
    struct Hanging;

    #[async_trait::async_trait]
    impl SmsProvider for Hanging {
        fn name(&self) -> &'static str {
            "hanging"
        }

        async fn send(&self, _: &OutboundMessage) -> Result<ProviderReceipt, ProviderError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_call_still_running_at_the_end_of_the_grace_period_is_handed_back() {
        let mut store = MockMessageStore::new();
        store.expect_finish().never();
        store
            .expect_release()
            .withf(|claim, _, _| *claim == ClaimToken(7))
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut worker = worker(MockSmsProvider::new(), store);
        worker.provider = Arc::new(Hanging);
        // A shutdown alone lets a call that has started run on.
        worker
            .process(claimed(1, None), place(), raised(), raised())
            .await;
    }

    /// A returned call gives up its place under the cap before its outcome is recorded (a few
    /// milliseconds in a batch), the message being left out of the next claim's count
    /// meanwhile; it leaves that count's exclusions once recorded.
    #[tokio::test]
    async fn a_returned_call_frees_its_place_while_its_outcome_is_recorded() {
        let places = Arc::new(Semaphore::new(1));
        let place = places.clone().try_acquire_owned().unwrap();
        let settling = Arc::new(Settling::default());
        let (seen_places, seen_settling) = (places.clone(), settling.clone());
        let mut store = MockMessageStore::new();
        store
            .expect_finish()
            .times(1)
            .returning(move |_, id, _, _, _| {
                assert_eq!(
                    seen_places.available_permits(),
                    1,
                    "the place was still held"
                );
                assert_eq!(seen_settling.snapshot(), vec![id]);
                Ok(true)
            });
        let provider = provider_answering(Ok(receipt("SM1")));
        let worker = Worker {
            settling: settling.clone(),
            ..worker(provider, store)
        };
        worker
            .process(claimed(1, None), place, running(), running())
            .await;
        assert!(settling.snapshot().is_empty());
    }

    /// The whole loop with a queue holding one message: it is claimed, sent and recorded, and
    /// no claim follows until the poll interval, neither at once nor when the send finishes.
    #[tokio::test(start_paused = true)]
    async fn a_claim_that_takes_every_due_message_is_not_repeated_until_woken() {
        let claims = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut store = MockMessageStore::new();
        let counted = claims.clone();
        store.expect_claim_within().returning(move |_, budget| {
            let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            assert!(budget.limit > 1, "room for more than the one message due");
            Ok(ports::Claimed {
                messages: if first {
                    vec![claimed(1, None)]
                } else {
                    Vec::new()
                },
                limited_by: None,
                places: i64::MAX,
            })
        });
        store.expect_next_due_at().returning(|| Ok(None));
        store
            .expect_finish()
            .times(1)
            .returning(|_, _, _, _, _| Ok(true));
        let provider = provider_answering(Ok(receipt("SM1")));
        let dispatcher = dispatcher(
            store,
            Arc::new(provider),
            DispatchConfig {
                concurrency: 10,
                poll_interval: Duration::from_secs(5),
                ..worker(MockSmsProvider::new(), MockMessageStore::new()).config
            },
        );
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(shutdown));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(claims.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            claims.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the poll interval still claims"
        );
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    /// At the cap, a claim takes a reserve beyond the free places; the first call to return
    /// hands its place to the waiting message, which is sent with no claim in between (every
    /// later claim finds the count over the cap by the waiting message).
    #[tokio::test(start_paused = true)]
    async fn a_returning_call_hands_its_place_to_a_message_claimed_in_reserve() {
        let first_batch: Vec<ClaimedMessage> = (0..3).map(|_| claimed(1, None)).collect();
        let waiting_id = first_batch[2].message.id;
        let mut store = MockMessageStore::new();
        let mut first = Some(first_batch);
        store.expect_claim_within().returning(move |_, budget| {
            assert_eq!(budget.reserve, 1);
            Ok(match first.take() {
                Some(messages) => {
                    let slots = u32::try_from(RESERVE_SHARE).unwrap();
                    assert_eq!(budget.limit, slots + 1, "every free slot and the reserve");
                    ports::Claimed {
                        messages,
                        limited_by: None,
                        places: 2,
                    }
                }
                // Over the cap by the message waiting.
                None => ports::Claimed {
                    messages: Vec::new(),
                    limited_by: None,
                    places: -1,
                },
            })
        });
        store.expect_next_due_at().returning(|| Ok(None));
        store
            .expect_finish()
            .times(3)
            .returning(|_, _, _, _, _| Ok(true));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut provider = MockSmsProvider::new();
        provider.expect_name().return_const("twilio");
        let seen = sent.clone();
        provider.expect_send().times(3).returning(move |outbound| {
            seen.lock().unwrap().push(outbound.message_id);
            Ok(receipt("SM1"))
        });
        let dispatcher = dispatcher(
            store,
            Arc::new(provider),
            DispatchConfig {
                concurrency: RESERVE_SHARE,
                ..worker(MockSmsProvider::new(), MockMessageStore::new()).config
            },
        );
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(shutdown));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert!(sent.contains(&waiting_id));
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    /// A message waiting for a place when shutdown begins is handed back at once, before the
    /// grace period the sends in flight are given.
    #[tokio::test(start_paused = true)]
    async fn a_message_waiting_for_a_place_is_handed_back_at_shutdown() {
        let batch: Vec<ClaimedMessage> = (0..2).map(|_| claimed(1, None)).collect();
        let (calling, waiting) = (batch[0].message.id, batch[1].message.id);
        // Later, over the cap by the message waiting.
        let (store, released) = claiming_once(batch, |_, first| if first { 1 } else { -1 });
        let dispatcher = hanging(store, RESERVE_SHARE);
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(shutdown));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*released.lock().unwrap(), vec![waiting]);
        running.await.unwrap();
        assert_eq!(*released.lock().unwrap(), vec![waiting, calling]);
    }

    /// A store whose first claim takes `batch` and the later ones nothing, each answering
    /// `places(budget, first)`; and the messages handed back to it, in order.
    fn claiming_once(
        batch: Vec<ClaimedMessage>,
        places: impl Fn(&ClaimBudget, bool) -> i64 + Send + 'static,
    ) -> (MockMessageStore, Arc<Mutex<Vec<MessageId>>>) {
        let mut store = MockMessageStore::new();
        let mut first = Some(batch);
        store.expect_claim_within().returning(move |_, budget| {
            let messages = first.take().unwrap_or_default();
            Ok(ports::Claimed {
                places: places(budget, !messages.is_empty()),
                messages,
                limited_by: None,
            })
        });
        store.expect_next_due_at().returning(|| Ok(None));
        let released = Arc::new(Mutex::new(Vec::new()));
        let seen = released.clone();
        store.expect_release().returning(move |_, id, _| {
            seen.lock().unwrap().push(id);
            Ok(true)
        });
        (store, released)
    }

    /// A dispatcher over `store` whose provider calls never answer.
    fn hanging(store: MockMessageStore, concurrency: usize) -> Dispatcher {
        dispatcher(
            store,
            Arc::new(Hanging),
            DispatchConfig {
                concurrency,
                shutdown_grace: Duration::from_secs(10),
                ..worker(MockSmsProvider::new(), MockMessageStore::new()).config
            },
        )
    }

    /// A claim may find more places under the shared cap than this dispatcher takes at once
    /// (a batch's worth): what it claims beyond them waits here, none of it dropped.
    #[tokio::test(start_paused = true)]
    async fn a_claim_beyond_the_places_taken_at_once_keeps_every_message() {
        let concurrency = 2 * MAX_BATCH as usize;
        let reserve = concurrency / RESERVE_SHARE;
        let budget_limit = MAX_BATCH as usize + reserve;
        let batch: Vec<ClaimedMessage> = (0..budget_limit).map(|_| claimed(1, None)).collect();
        let claimed: Vec<MessageId> = batch.iter().map(|c| c.message.id).collect();
        let (store, released) = claiming_once(batch, move |budget, first| {
            // The first claim finds the whole cap free; the later ones, the first's in flight.
            if first {
                assert_eq!(budget.limit as usize, budget_limit);
            }
            let in_flight = if first { 0 } else { budget_limit };
            i64::try_from(concurrency - in_flight).unwrap()
        });
        let dispatcher = hanging(store, concurrency);
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(shutdown));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        // Each was in a call (handed back after the grace period) or waiting (at shutdown).
        let released = released.lock().unwrap();
        let lost: Vec<_> = claimed.iter().filter(|id| !released.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "claimed, then neither sent nor handed back: {lost:?}"
        );
    }

    /// The database goes away while a send is in flight and comes back ten seconds later: the
    /// send's outcome is kept, written once the database answers and before any claim (which
    /// could take the message again), and the attempts meanwhile back off instead of spinning.
    #[tokio::test(start_paused = true)]
    async fn an_outcome_the_database_could_not_take_is_written_when_it_returns_before_any_claim() {
        use std::sync::atomic::{AtomicBool, Ordering};

        let up = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(Mutex::new(Vec::<(&str, bool)>::new()));
        let down = || ports::StoreError::Unavailable("connection refused".into());
        let mut store = MockMessageStore::new();
        let (claim_up, claim_calls) = (up.clone(), calls.clone());
        let mut first = true;
        store.expect_claim_within().returning(move |_, _| {
            let up = claim_up.load(Ordering::SeqCst);
            claim_calls.lock().unwrap().push(("claim", up));
            if !up {
                return Err(down());
            }
            Ok(ports::Claimed {
                messages: if std::mem::take(&mut first) {
                    vec![claimed(1, None)]
                } else {
                    Vec::new()
                },
                limited_by: None,
                places: i64::MAX,
            })
        });
        let (finish_up, finish_calls) = (up.clone(), calls.clone());
        store
            .expect_finish()
            .returning(move |claim, _, _, outcome, _| {
                let up = finish_up.load(Ordering::SeqCst);
                finish_calls.lock().unwrap().push(("finish", up));
                assert_eq!(claim, ClaimToken(7));
                assert!(matches!(outcome, DispatchOutcome::Sent { .. }));
                if up {
                    Ok(true)
                } else {
                    Err(down())
                }
            });
        store.expect_next_due_at().returning(|| Ok(None));
        let mut provider = MockSmsProvider::new();
        provider.expect_name().return_const("twilio");
        let outage = up.clone();
        provider.expect_send().times(1).returning(move |_| {
            // The database stops while Twilio accepts the message.
            outage.store(false, Ordering::SeqCst);
            Ok(receipt("SM1"))
        });
        let dispatcher = dispatcher(
            store,
            Arc::new(provider),
            DispatchConfig {
                concurrency: 10,
                ..worker(MockSmsProvider::new(), MockMessageStore::new()).config
            },
        );
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(dispatcher.run(shutdown));
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Past the first claim and the worker's own finish: 100 ms, doubling up to 2 s.
        let retries = calls.lock().unwrap().len() - 2;
        assert!(
            (5..=10).contains(&retries),
            "{retries} attempts in a ten-second outage: {:?}",
            calls.lock().unwrap()
        );
        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(super::super::backoff::CAP).await;
        stop.send(true).unwrap();
        running.await.unwrap();

        let calls = calls.lock().unwrap().clone();
        let finishes: Vec<bool> = calls
            .iter()
            .filter(|(call, _)| *call == "finish")
            .map(|(_, up)| *up)
            .collect();
        assert_eq!(finishes.first(), Some(&false), "{calls:?}");
        assert_eq!(finishes.last(), Some(&true), "never written: {calls:?}");
        assert_eq!(finishes.iter().filter(|up| **up).count(), 1, "{calls:?}");
        let written = calls.iter().position(|call| *call == ("finish", true));
        let claimed_again = (1..calls.len()).find(|&at| calls[at] == ("claim", true));
        assert!(
            matches!((written, claimed_again), (Some(written), Some(claimed)) if written < claimed),
            "a claim came before the kept outcome was written: {calls:?}"
        );
    }
}
