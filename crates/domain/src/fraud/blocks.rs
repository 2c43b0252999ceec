//! Blocked prefixes, which heal: a block lasts `FRAUD_BLOCK_HOURS`, is renewed while codes
//! are still asked for the prefix, and then lifts by itself, so that a range reassigned to
//! real users is not refused forever.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Prefix, Reason, ReasonCode};

/// How long a block lasts from its last renewal (`FRAUD_BLOCK_HOURS`, 12 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPeriod(TimeDelta);

impl Default for BlockPeriod {
    fn default() -> Self {
        Self(TimeDelta::hours(12))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a block period: a whole number of hours from 1 to 720")]
pub struct InvalidBlockPeriod(pub String);

impl BlockPeriod {
    const MAX_HOURS: i64 = 24 * 30;

    pub fn hours(hours: i64) -> Result<Self, InvalidBlockPeriod> {
        if (1..=Self::MAX_HOURS).contains(&hours) {
            Ok(Self(TimeDelta::hours(hours)))
        } else {
            Err(InvalidBlockPeriod(hours.to_string()))
        }
    }

    pub fn duration(self) -> TimeDelta {
        self.0
    }
}

impl FromStr for BlockPeriod {
    type Err = InvalidBlockPeriod;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim()
            .parse::<i64>()
            .ok()
            .and_then(|hours| Self::hours(hours).ok())
            .ok_or_else(|| InvalidBlockPeriod(text.to_owned()))
    }
}

/// A block is renewed at most this often: each renewal is a write shared by every instance,
/// and an hour more or less on a twelve-hour block changes nothing.
pub const BLOCK_RENEWAL_INTERVAL: TimeDelta = TimeDelta::hours(1);

/// A prefix the guard (or an admin) blocked, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub prefix: Prefix,
    pub reasons: Vec<Reason>,
    /// Codes asked for the prefix in the hour before it was blocked or last renewed.
    pub codes: u64,
    pub created_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    /// `None`: until an admin lifts it (a block by hand may say so).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Block {
    /// A block the guard places at `now` for `period`.
    pub fn new(
        prefix: Prefix,
        reasons: Vec<Reason>,
        codes: u64,
        now: DateTime<Utc>,
        period: BlockPeriod,
    ) -> Self {
        Self {
            prefix,
            reasons,
            codes,
            created_at: now,
            renewed_at: now,
            expires_at: Some(now + period.duration()),
        }
    }

    /// A block by hand, until `expires_at` or until lifted.
    pub fn manual(
        prefix: Prefix,
        detail: impl Into<String>,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            prefix,
            reasons: vec![Reason::new(ReasonCode::ManualBlock, detail)],
            codes: 0,
            created_at: now,
            renewed_at: now,
            expires_at,
        }
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    pub fn is_manual(&self) -> bool {
        self.reasons
            .iter()
            .any(|reason| reason.code == ReasonCode::ManualBlock)
    }

    /// How long until the block lifts by itself, if it does.
    pub fn retry_after(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.expires_at
            .map(|expires_at| (expires_at - now).max(TimeDelta::zero()))
    }

    /// The block renewed at `now` because `codes` were still asked for in the last hour, when
    /// a renewal is due: the guard's blocks only (one by hand keeps the expiry it was given),
    /// at most once a [`BLOCK_RENEWAL_INTERVAL`].
    pub fn renewed(&self, codes: u64, now: DateTime<Utc>, period: BlockPeriod) -> Option<Self> {
        if self.is_manual()
            || !self.is_active(now)
            || now - self.renewed_at < BLOCK_RENEWAL_INTERVAL
        {
            return None;
        }
        Some(Self {
            codes,
            renewed_at: now,
            expires_at: Some(now + period.duration()),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::signals::tests::noon;

    fn range() -> Prefix {
        Prefix::parse("+447700900").unwrap()
    }

    fn block() -> Block {
        Block::new(
            range(),
            vec![Reason::new(ReasonCode::PrefixSurge, "40 codes")],
            40,
            noon(),
            BlockPeriod::default(),
        )
    }

    #[test]
    fn a_block_heals_after_its_period() {
        let block = block();
        assert!(block.is_active(noon() + TimeDelta::hours(11)));
        assert_eq!(
            block.retry_after(noon() + TimeDelta::hours(11)),
            Some(TimeDelta::hours(1))
        );
        assert!(!block.is_active(noon() + TimeDelta::hours(12)));
    }

    #[test]
    fn a_block_is_renewed_at_most_hourly_while_codes_are_still_asked_for() {
        let block = block();
        assert_eq!(
            block.renewed(30, noon() + TimeDelta::minutes(59), BlockPeriod::default()),
            None
        );
        let later = noon() + TimeDelta::hours(5);
        let renewed = block.renewed(30, later, BlockPeriod::default()).unwrap();
        assert_eq!(renewed.expires_at, Some(later + TimeDelta::hours(12)));
        assert_eq!((renewed.created_at, renewed.codes), (noon(), 30));
        assert!(renewed.is_active(noon() + TimeDelta::hours(16)));
        // A healed block is not brought back by renewal: the guard judges afresh.
        assert_eq!(
            block.renewed(30, noon() + TimeDelta::hours(13), BlockPeriod::default()),
            None
        );
    }

    #[test]
    fn a_block_by_hand_keeps_its_expiry() {
        let forever = Block::manual(range(), "fraud report #12", noon(), None);
        assert!(forever.is_manual());
        assert!(forever.is_active(noon() + TimeDelta::days(400)));
        assert_eq!(forever.retry_after(noon()), None);
        assert_eq!(
            forever.renewed(50, noon() + TimeDelta::hours(3), BlockPeriod::default()),
            None
        );
    }

    #[test]
    fn the_block_period_is_whole_hours() {
        assert_eq!(
            "24".parse::<BlockPeriod>().unwrap().duration(),
            TimeDelta::hours(24)
        );
        for text in ["0", "-3", "1.5", "721", "twelve"] {
            assert!(text.parse::<BlockPeriod>().is_err(), "{text}");
        }
    }
}
