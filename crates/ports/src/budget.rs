//! The throughput caps every instance shares through the store: provider calls in flight
//! (`DISPATCH_CONCURRENCY`) and sends per second through one sender (`SENDER_MPS`). A store
//! applies them inside its claim, atomically, with the arithmetic here.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::MessageId;

use crate::ClaimedMessage;

/// How far ahead a claim books send times: a claimed message waits at most about this long
/// for its turn, well inside its lease, and a one-time code queued behind a backlog is never
/// more than this behind it.
pub const SEND_HORIZON: Duration = Duration::from_secs(1);

/// What one claim may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimBudget {
    /// At most this many messages (the caller's free send slots).
    pub limit: u32,
    /// How long each claimed message stays with the caller.
    pub lease: Duration,
    /// Messages `sending` under a live lease, on every instance together, never exceed this.
    pub max_in_flight: Option<u32>,
    /// Beyond `max_in_flight`, at most this many more messages `sending` (on every instance
    /// together), which wait for a place ([`Claimed::places`]): a caller's own returning call
    /// hands its place to one at once, where claiming a message then would leave the place
    /// empty for the claim's round trips. Counted as `sending` like the others, so a place
    /// handed on is one the count already held.
    pub reserve: u32,
    /// The caller's messages whose provider call has returned but whose outcome is not yet
    /// recorded: still `sending`, no longer in flight, so not counted against
    /// `max_in_flight`. Naming them (rather than subtracting a number) cannot undercount: one
    /// recorded since is no longer `sending`, so leaving it out of the count changes nothing.
    pub settling: Vec<MessageId>,
    /// Send times through one sender, on every instance together, are spaced by this rate.
    pub sender_rate: Option<SenderRate>,
    /// A message whose lease ran out after this many attempts is not claimed again but
    /// `failed`: its workers keep dying (`RETRY_MAX_ATTEMPTS`). `None`: no limit.
    pub max_attempts: Option<u32>,
}

/// Sends per second through one sending number or messaging service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRate {
    pub sender: String,
    pub per_second: u32,
}

impl SenderRate {
    /// The time between two sends.
    pub fn spacing(&self) -> TimeDelta {
        TimeDelta::nanoseconds(1_000_000_000 / i64::from(self.per_second.max(1)))
    }
}

/// What a claim took, and why it did not take more.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// In dispatch order, each with the time its provider call may start.
    pub messages: Vec<ClaimedMessage>,
    /// Set when a cap, not the queue, stopped the claim short of its limit.
    pub limited_by: Option<ClaimLimit>,
    /// `max_in_flight` less the messages `sending` when the claim counted them, every
    /// claimer's waiting ones among them (`i64::MAX` without a cap). When positive, the first
    /// this many claimed may start at once and the rest wait; when negative, the count is
    /// over the cap by waiting messages, and that many of the caller's own must go on waiting
    /// (the others were counted within the cap and may start).
    pub places: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimLimit {
    /// `max_in_flight` is reached; a finished send frees a place.
    InFlight,
    /// The sender's send times are booked up to the horizon; the next one opens at `until`.
    SenderRate { until: DateTime<Utc> },
}

/// How many messages a claim at `now` may take, computed under the store's lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance {
    pub count: u32,
    pub limited_by: Option<ClaimLimit>,
    /// See [`Claimed::places`].
    places: i64,
    /// When the first message claimed may be sent; the others follow at the sender's spacing.
    first_send_at: DateTime<Utc>,
    spacing: TimeDelta,
}

impl ClaimBudget {
    /// When the lease of a message claimed at `now` runs out (the end of time for a lease too
    /// long to say).
    pub fn lease_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        TimeDelta::from_std(self.lease)
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The allowance at `now`, given how many messages are `sending` under a live lease and when
    /// the sender's next send time is free (`None`: never used, or no rate).
    pub fn allowance(
        &self,
        now: DateTime<Utc>,
        in_flight: u32,
        next_send_at: Option<DateTime<Utc>>,
    ) -> Allowance {
        let mut allowance = Allowance {
            count: self.limit,
            limited_by: None,
            places: i64::MAX,
            first_send_at: now,
            spacing: TimeDelta::zero(),
        };
        if let Some(max) = self.max_in_flight {
            allowance.places = i64::from(max) - i64::from(in_flight);
            let room = max.saturating_add(self.reserve).saturating_sub(in_flight);
            if room < allowance.count {
                allowance.count = room;
                allowance.limited_by = Some(ClaimLimit::InFlight);
            }
        }
        if let Some(rate) = &self.sender_rate {
            let spacing = rate.spacing();
            let start = next_send_at.map_or(now, |next| next.max(now));
            let horizon = TimeDelta::from_std(SEND_HORIZON).unwrap_or(TimeDelta::MAX);
            let bookable = now + horizon - start;
            let slots = if bookable < TimeDelta::zero() {
                0
            } else {
                let whole = bookable.num_nanoseconds().unwrap_or(i64::MAX)
                    / spacing.num_nanoseconds().unwrap_or(1).max(1);
                u32::try_from(whole.saturating_add(1)).unwrap_or(u32::MAX)
            };
            if slots < allowance.count {
                allowance.count = slots;
                let next_free = start + spacing * i32::try_from(slots).unwrap_or(i32::MAX);
                allowance.limited_by = Some(ClaimLimit::SenderRate {
                    until: next_free - horizon,
                });
            }
            allowance.first_send_at = start;
            allowance.spacing = spacing;
        }
        allowance
    }
}

/// Highest priority first, then oldest: the order a claim takes messages in.
pub fn dispatch_order(a: &ClaimedMessage, b: &ClaimedMessage) -> std::cmp::Ordering {
    b.message
        .priority
        .cmp(&a.message.priority)
        .then(a.message.created_at.cmp(&b.message.created_at))
        .then(a.message.id.cmp(&b.message.id))
}

impl Allowance {
    /// When the `index`th message of the claim (in dispatch order) may be sent.
    pub fn send_at(&self, index: usize) -> DateTime<Utc> {
        self.first_send_at + self.spacing * i32::try_from(index).unwrap_or(i32::MAX)
    }

    /// The sender's next free send time once `claimed` messages took theirs.
    pub fn next_send_at(&self, claimed: usize) -> DateTime<Utc> {
        self.send_at(claimed)
    }

    /// What a claim returned, in dispatch order (highest priority first, then oldest), which a
    /// claim's `RETURNING` does not keep: [`Allowance::apply`] to the sorted messages.
    pub fn dispatch(&self, mut messages: Vec<ClaimedMessage>) -> Claimed {
        messages.sort_by(dispatch_order);
        self.apply(messages)
    }

    /// Gives each claimed message (sorted in dispatch order) its send time, and says why the
    /// claim stopped short if a cap, not the queue, stopped it.
    pub fn apply(&self, mut messages: Vec<ClaimedMessage>) -> Claimed {
        for (index, claimed) in messages.iter_mut().enumerate() {
            claimed.send_at = self.send_at(index);
        }
        let limited_by = if messages.len() == self.count as usize {
            self.limited_by
        } else {
            None
        };
        Claimed {
            messages,
            limited_by,
            places: self.places,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_268_800, 0).unwrap_or_default()
    }

    fn budget(limit: u32, max_in_flight: Option<u32>, per_second: Option<u32>) -> ClaimBudget {
        ClaimBudget {
            limit,
            lease: Duration::from_secs(60),
            max_in_flight,
            reserve: 0,
            settling: Vec::new(),
            sender_rate: per_second.map(|per_second| SenderRate {
                sender: "+15005550006".into(),
                per_second,
            }),
            max_attempts: None,
        }
    }

    #[test]
    fn without_caps_the_limit_is_the_allowance() {
        let allowance = budget(7, None, None).allowance(now(), 1_000, None);
        assert_eq!(allowance.count, 7);
        assert_eq!(allowance.limited_by, None);
        assert_eq!(allowance.send_at(6), now());
    }

    #[test]
    fn messages_in_flight_elsewhere_shrink_the_allowance() {
        let allowance = budget(10, Some(12), None).allowance(now(), 9, None);
        assert_eq!(allowance.count, 3);
        assert_eq!(allowance.limited_by, Some(ClaimLimit::InFlight));
        let full = budget(10, Some(12), None).allowance(now(), 15, None);
        assert_eq!(full.count, 0);
    }

    #[test]
    fn a_reserve_is_claimed_beyond_the_free_places_to_wait_for_one() {
        let reserved = ClaimBudget {
            reserve: 4,
            ..budget(10, Some(12), None)
        };
        let allowance = reserved.allowance(now(), 9, None);
        assert_eq!(allowance.count, 7);
        assert_eq!(allowance.limited_by, Some(ClaimLimit::InFlight));
        assert_eq!(allowance.apply(Vec::new()).places, 3);
        let full = reserved.allowance(now(), 15, None);
        assert_eq!((full.count, full.places), (1, -3));
        let reserve_taken = reserved.allowance(now(), 16, None);
        assert_eq!(reserve_taken.count, 0);
        let uncapped = budget(10, None, None).allowance(now(), 15, None);
        assert_eq!(uncapped.places, i64::MAX);
    }

    #[test]
    fn a_rate_books_spaced_send_times_up_to_the_horizon() {
        let allowance = budget(100, None, Some(4)).allowance(now(), 0, None);
        // now, +250 ms, +500 ms, +750 ms, +1 s.
        assert_eq!(allowance.count, 5);
        assert_eq!(allowance.send_at(3), now() + TimeDelta::milliseconds(750));
        assert_eq!(
            allowance.limited_by,
            Some(ClaimLimit::SenderRate {
                until: now() + TimeDelta::milliseconds(250)
            })
        );
        assert_eq!(
            allowance.next_send_at(5),
            now() + TimeDelta::milliseconds(1250)
        );
    }

    #[test]
    fn a_booked_up_sender_allows_nothing_until_its_next_time_nears() {
        let booked = now() + TimeDelta::milliseconds(1500);
        let allowance = budget(100, None, Some(4)).allowance(now(), 0, Some(booked));
        assert_eq!(allowance.count, 0);
        assert_eq!(
            allowance.limited_by,
            Some(ClaimLimit::SenderRate {
                until: now() + TimeDelta::milliseconds(500)
            })
        );
    }

    #[test]
    fn a_send_time_in_the_past_is_not_a_credit() {
        let long_ago = now() - TimeDelta::hours(1);
        let allowance = budget(100, None, Some(2)).allowance(now(), 0, Some(long_ago));
        assert_eq!(allowance.count, 3);
        assert_eq!(allowance.send_at(0), now());
    }
}
