//! Two-factor verifications: the rules of Twilio Verify, which users already know, as pure
//! functions of the verification and the time.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::fraud::Decision;
use crate::{Channel, PhoneNumber, Transaction};

crate::id::uuid_id!(VerificationId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Expired,
}

impl VerificationStatus {
    pub const ALL: [VerificationStatus; 5] = [
        VerificationStatus::Pending,
        VerificationStatus::Approved,
        VerificationStatus::Canceled,
        VerificationStatus::MaxAttemptsReached,
        VerificationStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "pending",
            VerificationStatus::Approved => "approved",
            VerificationStatus::Canceled => "canceled",
            VerificationStatus::MaxAttemptsReached => "max_attempts_reached",
            VerificationStatus::Expired => "expired",
        }
    }

    /// A pending verification may end in any other status; an ended one stays as it is, so an
    /// approval is single-use. The exception: `max_attempts_reached` may still become
    /// `approved`, because checks run concurrently: the last counted check, wrong, may record
    /// the lock before an earlier counted check with the right code records its approval, and
    /// that earlier check was within the limit.
    pub fn can_transition_to(self, next: VerificationStatus) -> bool {
        match self {
            VerificationStatus::Pending => next != VerificationStatus::Pending,
            VerificationStatus::MaxAttemptsReached => next == VerificationStatus::Approved,
            VerificationStatus::Approved
            | VerificationStatus::Canceled
            | VerificationStatus::Expired => false,
        }
    }

    /// The statuses from which a verification may move to `next`.
    pub fn able_to_become(next: VerificationStatus) -> impl Iterator<Item = VerificationStatus> {
        VerificationStatus::ALL
            .into_iter()
            .filter(move |status| status.can_transition_to(next))
    }
}

impl fmt::Display for VerificationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerificationStatus {
    type Err = crate::message::UnknownStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        VerificationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| crate::message::UnknownStatus(value.to_owned()))
    }
}

/// Number of digits in a code: 4 to 10, as Twilio Verify allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLength(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a code has 4 to 10 digits, not {0}")]
pub struct InvalidCodeLength(pub i64);

impl CodeLength {
    pub const MIN: u8 = 4;
    pub const MAX: u8 = 10;

    pub fn new(digits: i64) -> Result<Self, InvalidCodeLength> {
        match u8::try_from(digits) {
            Ok(n) if (Self::MIN..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(InvalidCodeLength(digits)),
        }
    }

    pub fn digits(self) -> u8 {
        self.0
    }
}

impl Default for CodeLength {
    fn default() -> Self {
        Self(6)
    }
}

/// A one-time code in clear. It exists only between generation and rendering, and between the
/// user's check request and hashing; Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a code is 4 to 10 digits")]
pub struct InvalidCode;

impl VerificationCode {
    pub fn parse(text: &str) -> Result<Self, InvalidCode> {
        let length = text.len();
        if (CodeLength::MIN as usize..=CodeLength::MAX as usize).contains(&length)
            && text.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidCode)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerificationCode(<redacted>)")
    }
}

/// A code as the store keeps it: a keyed hash (HMAC-SHA256 with the server's pepper), never the
/// code itself, so that a database dump does not hand out valid codes.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash(Vec<u8>);

impl CodeHash {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(<redacted>)")
    }
}

/// The limits every verification is held to. Defaults follow Twilio Verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationPolicy {
    pub code_length: CodeLength,
    pub lifetime: TimeDelta,
    pub max_checks: u32,
    pub max_sends: u32,
    pub resend_interval: TimeDelta,
}

impl Default for VerificationPolicy {
    fn default() -> Self {
        Self {
            code_length: CodeLength::default(),
            lifetime: TimeDelta::minutes(10),
            max_checks: 5,
            max_sends: 5,
            resend_interval: TimeDelta::seconds(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub id: VerificationId,
    pub to: PhoneNumber,
    pub channel: Channel,
    /// Name of the API key that started it: verifications are not shared between clients.
    pub api_key: String,
    pub status: VerificationStatus,
    pub check_count: u32,
    pub max_checks: u32,
    pub send_count: u32,
    pub max_sends: u32,
    pub expires_at: DateTime<Utc>,
    pub last_sent_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// What the fraud guard decided when the verification was started; `None` for one
    /// started before the guard judged codes.
    pub risk: Option<Decision>,
    /// The payment its codes confirm (PSD2): their texts name it and their hashes bind it.
    pub transaction: Option<Transaction>,
}

/// Why a new code cannot be sent for a verification right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendRefusal {
    NotPending(VerificationStatus),
    TooManySends,
    TooSoon { retry_after: TimeDelta },
}

/// Why a check is not counted: the verification no longer takes checks. Twilio Verify answers
/// these as errors rather than as a check's status, so that no client reads a refused check
/// as an approval; neither message names the status, so neither says "approved".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckRefusal {
    /// Approved, expired or canceled (Twilio Verify's 20404).
    #[error("the verification is no longer pending; start a new one")]
    Ended(VerificationStatus),
    /// Every check it allows has been made (Twilio Verify's 60202).
    #[error("the verification has no checks left; start a new one")]
    MaxAttemptsReached,
}

impl CheckRefusal {
    /// The status of a verification that refuses checks for this reason.
    pub fn status(self) -> VerificationStatus {
        match self {
            CheckRefusal::Ended(status) => status,
            CheckRefusal::MaxAttemptsReached => VerificationStatus::MaxAttemptsReached,
        }
    }
}

/// What a counted check answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOutcome {
    pub status: VerificationStatus,
    pub valid: bool,
    pub attempts_left: u32,
}

impl Verification {
    /// A verification created now under `policy`, its first code being sent.
    pub fn start(
        to: PhoneNumber,
        channel: Channel,
        api_key: String,
        policy: &VerificationPolicy,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: VerificationId::generate(),
            to,
            channel,
            api_key,
            status: VerificationStatus::Pending,
            check_count: 0,
            max_checks: policy.max_checks,
            send_count: 1,
            max_sends: policy.max_sends,
            expires_at: now + policy.lifetime,
            last_sent_at: now,
            created_at: now,
            risk: None,
            transaction: None,
        }
    }

    /// The status as a reader should see it: a pending verification past its lifetime is
    /// expired even before anything has written that down.
    pub fn status_at(&self, now: DateTime<Utc>) -> VerificationStatus {
        if self.status == VerificationStatus::Pending && now >= self.expires_at {
            VerificationStatus::Expired
        } else {
            self.status
        }
    }

    pub fn attempts_left(&self) -> u32 {
        self.max_checks.saturating_sub(self.check_count)
    }

    /// Whether a check may be counted now; the store counts it atomically only when this holds.
    pub fn admits_check(&self, now: DateTime<Utc>) -> bool {
        self.check_refusal(now).is_none()
    }

    /// Whether another code may be sent for this verification now.
    pub fn may_resend(
        &self,
        policy: &VerificationPolicy,
        now: DateTime<Utc>,
    ) -> Result<(), ResendRefusal> {
        let status = self.status_at(now);
        if status != VerificationStatus::Pending {
            return Err(ResendRefusal::NotPending(status));
        }
        if self.send_count >= self.max_sends {
            return Err(ResendRefusal::TooManySends);
        }
        let next_allowed = self.last_sent_at + policy.resend_interval;
        if now < next_allowed {
            return Err(ResendRefusal::TooSoon {
                retry_after: next_allowed - now,
            });
        }
        Ok(())
    }

    /// The answer to a check that has been counted (`check_count` includes it), given whether
    /// the code matched one of the verification's codes.
    pub fn outcome_of_counted_check(&self, code_matches: bool) -> CheckOutcome {
        let attempts_left = self.attempts_left();
        if code_matches {
            CheckOutcome {
                status: VerificationStatus::Approved,
                valid: true,
                attempts_left,
            }
        } else if attempts_left == 0 {
            CheckOutcome {
                status: VerificationStatus::MaxAttemptsReached,
                valid: false,
                attempts_left,
            }
        } else {
            CheckOutcome {
                status: VerificationStatus::Pending,
                valid: false,
                attempts_left,
            }
        }
    }

    /// Why a check cannot be counted now, if it cannot: the answer to a check the store
    /// refused. Nothing approves a verification that refuses checks, whatever the code.
    pub fn check_refusal(&self, now: DateTime<Utc>) -> Option<CheckRefusal> {
        match self.status_at(now) {
            VerificationStatus::Pending if self.attempts_left() > 0 => None,
            VerificationStatus::Pending | VerificationStatus::MaxAttemptsReached => {
                Some(CheckRefusal::MaxAttemptsReached)
            }
            ended => Some(CheckRefusal::Ended(ended)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started_at(now: DateTime<Utc>) -> Verification {
        Verification::start(
            PhoneNumber::parse("+15551234567").unwrap(),
            Channel::Sms,
            "auth".into(),
            &VerificationPolicy::default(),
            now,
        )
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_verification_expires_after_ten_minutes_by_default() {
        let verification = started_at(t0());
        let almost = t0() + TimeDelta::minutes(10) - TimeDelta::seconds(1);
        assert_eq!(verification.status_at(almost), VerificationStatus::Pending);
        assert_eq!(
            verification.status_at(t0() + TimeDelta::minutes(10)),
            VerificationStatus::Expired
        );
        assert_eq!(
            verification.check_refusal(t0() + TimeDelta::minutes(11)),
            Some(CheckRefusal::Ended(VerificationStatus::Expired))
        );
    }

    #[test]
    fn a_matching_code_approves() {
        let mut verification = started_at(t0());
        verification.check_count = 1;
        let outcome = verification.outcome_of_counted_check(true);
        assert_eq!(outcome.status, VerificationStatus::Approved);
        assert!(outcome.valid);
    }

    #[test]
    fn wrong_codes_count_down_to_max_attempts_reached() {
        let mut verification = started_at(t0());
        for expected_left in (1..5).rev() {
            verification.check_count += 1;
            let outcome = verification.outcome_of_counted_check(false);
            assert_eq!(outcome.status, VerificationStatus::Pending);
            assert_eq!(outcome.attempts_left, expected_left);
        }
        verification.check_count += 1;
        let fifth = verification.outcome_of_counted_check(false);
        assert_eq!(fifth.status, VerificationStatus::MaxAttemptsReached);
        assert_eq!(fifth.attempts_left, 0);
        assert!(!verification.admits_check(t0()));
    }

    #[test]
    fn a_sixth_check_is_refused_even_with_the_right_code() {
        let mut verification = started_at(t0());
        verification.check_count = 5;
        assert_eq!(
            verification.check_refusal(t0()),
            Some(CheckRefusal::MaxAttemptsReached)
        );
        verification.status = VerificationStatus::MaxAttemptsReached;
        assert_eq!(
            verification.check_refusal(t0()),
            Some(CheckRefusal::MaxAttemptsReached)
        );
    }

    #[test]
    fn an_approved_verification_stays_approved_and_admits_no_check() {
        let mut verification = started_at(t0());
        verification.status = VerificationStatus::Approved;
        assert!(!verification.admits_check(t0()));
        assert_eq!(
            verification.check_refusal(t0() + TimeDelta::hours(1)),
            Some(CheckRefusal::Ended(VerificationStatus::Approved))
        );
        for next in VerificationStatus::ALL {
            assert!(!VerificationStatus::Approved.can_transition_to(next));
        }
    }

    #[test]
    fn only_an_approval_follows_max_attempts_reached_and_nothing_follows_the_other_ends() {
        use VerificationStatus::*;
        assert!(MaxAttemptsReached.can_transition_to(Approved));
        assert!(!MaxAttemptsReached.can_transition_to(Canceled));
        for ended in [Approved, Canceled, Expired] {
            for next in VerificationStatus::ALL {
                assert!(!ended.can_transition_to(next), "{ended} to {next}");
            }
        }
        assert_eq!(
            VerificationStatus::able_to_become(Approved).collect::<Vec<_>>(),
            vec![Pending, MaxAttemptsReached]
        );
        assert_eq!(
            VerificationStatus::able_to_become(Canceled).collect::<Vec<_>>(),
            vec![Pending]
        );
    }

    #[test]
    fn resending_waits_thirty_seconds_and_stops_after_five_sends() {
        let policy = VerificationPolicy::default();
        let mut verification = started_at(t0());
        assert_eq!(
            verification.may_resend(&policy, t0() + TimeDelta::seconds(10)),
            Err(ResendRefusal::TooSoon {
                retry_after: TimeDelta::seconds(20)
            })
        );
        assert_eq!(
            verification.may_resend(&policy, t0() + TimeDelta::seconds(30)),
            Ok(())
        );
        verification.send_count = 5;
        assert_eq!(
            verification.may_resend(&policy, t0() + TimeDelta::seconds(60)),
            Err(ResendRefusal::TooManySends)
        );
    }

    #[test]
    fn code_lengths_outside_four_to_ten_are_refused() {
        assert!(CodeLength::new(3).is_err());
        assert!(CodeLength::new(11).is_err());
        assert!(CodeLength::new(-1).is_err());
        assert_eq!(CodeLength::new(4).unwrap().digits(), 4);
        assert_eq!(CodeLength::default().digits(), 6);
    }

    #[test]
    fn codes_are_digits_only_and_never_printed() {
        assert!(VerificationCode::parse("12a456").is_err());
        assert!(VerificationCode::parse("123").is_err());
        let code = VerificationCode::parse("123456").unwrap();
        assert_eq!(code.expose(), "123456");
        assert!(!format!("{code:?}").contains("123456"));
    }
}
