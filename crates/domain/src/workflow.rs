//! Fallback workflows: a verification that goes out on a list of channels in turn, as Vonage's
//! Verify workflows do. The rules of a workflow (what may be asked for, which step comes next,
//! when it is due) as pure functions; storing and running the steps is the store's and the
//! worker's job.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::{Channel, MessageId, MessageStatus, VerificationId};

/// Why a workflow moved on to its next channel. Few values, so that they can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The step's message failed for good, or its receipt said `failed`.
    Failed,
    /// Its receipt said `undelivered` (for a call: busy or no answer).
    Undelivered,
    /// No code approved within the workflow's delay after the step was sent.
    Timeout,
}

impl FallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Failed => "failed",
            FallbackReason::Undelivered => "undelivered",
            FallbackReason::Timeout => "timeout",
        }
    }

    /// The reason a step's message in `status` gives for the next step, if any: a message
    /// still on its way, or delivered, gives none (only the delay can).
    pub fn of_status(status: MessageStatus) -> Option<Self> {
        match status {
            MessageStatus::Failed => Some(FallbackReason::Failed),
            MessageStatus::Undelivered => Some(FallbackReason::Undelivered),
            MessageStatus::Queued
            | MessageStatus::Sending
            | MessageStatus::Sent
            | MessageStatus::Delivered
            | MessageStatus::Expired => None,
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The channels a verification goes out on, in order, and how long each step waits for an
/// approval before the next: built only through [`WorkflowPlan::new`], which holds its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPlan {
    channels: Vec<Channel>,
    fallback_after: TimeDelta,
}

/// What is wrong with a workflow a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWorkflow {
    #[error("channels lists at least one channel")]
    Empty,
    #[error("channels lists {0} twice")]
    Duplicate(Channel),
    #[error(
        "fallback_after_seconds is {min} to {max}, not {0}",
        min = WorkflowPlan::MIN_FALLBACK_SECONDS,
        max = WorkflowPlan::MAX_FALLBACK_SECONDS
    )]
    FallbackOutOfRange(i64),
}

impl WorkflowPlan {
    /// The delay when a request names none, as Vonage's and the issue's.
    pub const DEFAULT_FALLBACK_SECONDS: i64 = 60;
    /// Less than this and a person reading the first code has no time to type it; as
    /// Vonage's smallest channel timeout.
    pub const MIN_FALLBACK_SECONDS: i64 = 15;
    /// A code lives 10 minutes by default: a later step would come after it expired.
    pub const MAX_FALLBACK_SECONDS: i64 = 600;

    pub fn new(
        channels: Vec<Channel>,
        fallback_after_seconds: i64,
    ) -> Result<Self, InvalidWorkflow> {
        if channels.is_empty() {
            return Err(InvalidWorkflow::Empty);
        }
        for (index, channel) in channels.iter().enumerate() {
            if channels[..index].contains(channel) {
                return Err(InvalidWorkflow::Duplicate(*channel));
            }
        }
        if !(Self::MIN_FALLBACK_SECONDS..=Self::MAX_FALLBACK_SECONDS)
            .contains(&fallback_after_seconds)
        {
            return Err(InvalidWorkflow::FallbackOutOfRange(fallback_after_seconds));
        }
        Ok(Self {
            channels,
            fallback_after: TimeDelta::seconds(fallback_after_seconds),
        })
    }

    /// A one-step workflow: what a request naming only `channel` asks for.
    pub fn single(channel: Channel) -> Self {
        Self {
            channels: vec![channel],
            fallback_after: TimeDelta::seconds(Self::DEFAULT_FALLBACK_SECONDS),
        }
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    pub fn first(&self) -> Channel {
        // `new` refuses an empty list, and `single` has one.
        self.channels.first().copied().unwrap_or(Channel::Sms)
    }

    pub fn fallback_after(&self) -> TimeDelta {
        self.fallback_after
    }

    /// The plan of a verification that confirms a payment: without the channels that cannot
    /// name it (WhatsApp's fixed templates), unless none would be left, so that the start is
    /// refused naming the channel.
    pub fn for_transaction(self) -> Self {
        let channels: Vec<Channel> = self
            .channels
            .iter()
            .copied()
            .filter(|channel| channel.carries_transaction_details())
            .collect();
        if channels.is_empty() {
            return self;
        }
        Self { channels, ..self }
    }

    /// Whether there is a step after the first: a one-step plan needs no workflow stored.
    pub fn has_fallback(&self) -> bool {
        self.channels.len() > 1
    }

    /// The workflow of a verification whose first step, on the first channel, is sent at
    /// `now` in `message`.
    pub fn start(
        &self,
        verification_id: VerificationId,
        message: MessageId,
        request: StepRequest,
        now: DateTime<Utc>,
    ) -> Workflow {
        Workflow {
            request,
            verification_id,
            plan: self.clone(),
            step: 0,
            step_message_id: Some(message),
            next_step_at: self.has_fallback().then(|| now + self.fallback_after),
            stopped_reason: None,
        }
    }

    /// The channels as stored: `whatsapp,sms,voice`.
    pub fn channels_text(&self) -> String {
        self.channels
            .iter()
            .map(|channel| channel.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What the request that started a workflow said of its code's text and its client, which
/// every later step repeats: kept with the workflow, as the request is gone by then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default)]
    pub trusted: bool,
}

/// A verification's workflow as stored: its plan and how far it has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub verification_id: VerificationId,
    pub plan: WorkflowPlan,
    /// The index in the plan's channels of the step sent last.
    pub step: u32,
    /// That step's message.
    pub step_message_id: Option<MessageId>,
    /// When the next step is due without news; `None` once no step is left or steps stopped.
    pub next_step_at: Option<DateTime<Utc>>,
    /// Why steps stopped before the last one.
    pub stopped_reason: Option<String>,
    pub request: StepRequest,
}

impl Workflow {
    /// A workflow read back from its stored columns; the plan is not validated again (a stored
    /// plan was valid when it was written), but it must name channels.
    pub fn from_stored(
        verification_id: VerificationId,
        channels: Vec<Channel>,
        fallback_after_seconds: i64,
        step: u32,
    ) -> Option<Self> {
        if channels.is_empty() || fallback_after_seconds <= 0 {
            return None;
        }
        Some(Self {
            verification_id,
            plan: WorkflowPlan {
                channels,
                fallback_after: TimeDelta::seconds(fallback_after_seconds),
            },
            step,
            step_message_id: None,
            next_step_at: None,
            stopped_reason: None,
            request: StepRequest::default(),
        })
    }

    /// The channel of the step sent last.
    pub fn current_channel(&self) -> Option<Channel> {
        self.plan.channels.get(self.step as usize).copied()
    }

    /// The channel of the next step, if one is left.
    pub fn next_channel(&self) -> Option<Channel> {
        self.plan.channels.get(self.step as usize + 1).copied()
    }

    /// When the step after the one taken as step `step` at `sent_at` is due: `None` after the
    /// last.
    pub fn next_due_after(&self, step: u32, sent_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (step as usize + 1 < self.plan.channels.len()).then(|| sent_at + self.plan.fallback_after)
    }

    /// The step a code a client asked for on `channel` stands for: that channel's place in the
    /// plan when it is later than the current step (the steps before it are passed over: "call
    /// me instead" makes the call the step taken), otherwise the current step, whose delay
    /// starts again.
    pub fn step_for_resend(&self, channel: Channel) -> u32 {
        match self.plan.channels.iter().position(|c| *c == channel) {
            Some(index) if index as u32 > self.step => index as u32,
            _ => self.step,
        }
    }
}

/// One code sent for a verification, on one channel, as its client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationAttempt {
    pub message_id: MessageId,
    pub channel: Channel,
    /// The provider that accepted it, once one did.
    pub provider: Option<String>,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    /// When a provider accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When its receipt said delivered (a call: answered).
    pub delivered_at: Option<DateTime<Utc>>,
    /// Whether its code is the one that approved the verification.
    pub approved: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_workflow_refuses_no_channels_duplicates_and_delays_out_of_range() {
        use Channel::*;
        assert_eq!(WorkflowPlan::new(vec![], 60), Err(InvalidWorkflow::Empty));
        assert_eq!(
            WorkflowPlan::new(vec![Sms, Voice, Sms], 60),
            Err(InvalidWorkflow::Duplicate(Sms))
        );
        assert_eq!(
            WorkflowPlan::new(vec![Sms, Voice], 14),
            Err(InvalidWorkflow::FallbackOutOfRange(14))
        );
        assert_eq!(
            WorkflowPlan::new(vec![Sms, Voice], 601)
                .unwrap_err()
                .to_string(),
            "fallback_after_seconds is 15 to 600, not 601"
        );
        assert!(WorkflowPlan::new(vec![Whatsapp, Sms, Voice], 15).is_ok());
    }

    #[test]
    fn each_step_is_due_its_delay_after_the_one_before_and_none_after_the_last() {
        let plan = WorkflowPlan::new(vec![Channel::Sms, Channel::Voice], 60).unwrap();
        let workflow = plan.start(
            VerificationId::generate(),
            MessageId::generate(),
            StepRequest::default(),
            now(),
        );
        assert_eq!(workflow.next_step_at, Some(now() + TimeDelta::seconds(60)));
        assert_eq!(workflow.next_channel(), Some(Channel::Voice));
        assert_eq!(workflow.next_due_after(1, now()), None);
        let single = WorkflowPlan::single(Channel::Sms);
        assert_eq!(
            single
                .start(
                    VerificationId::generate(),
                    MessageId::generate(),
                    StepRequest::default(),
                    now()
                )
                .next_step_at,
            None
        );
    }

    #[test]
    fn a_resend_on_a_later_channel_of_the_plan_passes_over_the_steps_before_it() {
        let plan =
            WorkflowPlan::new(vec![Channel::Whatsapp, Channel::Sms, Channel::Voice], 60).unwrap();
        let workflow = plan.start(
            VerificationId::generate(),
            MessageId::generate(),
            StepRequest::default(),
            now(),
        );
        assert_eq!(workflow.step_for_resend(Channel::Voice), 2);
        assert_eq!(workflow.step_for_resend(Channel::Whatsapp), 0);
    }

    #[test]
    fn only_a_failure_or_an_undelivered_receipt_moves_a_workflow_on_before_its_delay() {
        assert_eq!(
            FallbackReason::of_status(MessageStatus::Undelivered),
            Some(FallbackReason::Undelivered)
        );
        assert_eq!(
            FallbackReason::of_status(MessageStatus::Failed),
            Some(FallbackReason::Failed)
        );
        assert_eq!(FallbackReason::of_status(MessageStatus::Delivered), None);
        assert_eq!(FallbackReason::of_status(MessageStatus::Sent), None);
    }

    #[test]
    fn a_payment_s_workflow_passes_whatsapp_over_unless_it_is_all_there_is() {
        let plan = WorkflowPlan::new(vec![Channel::Whatsapp, Channel::Sms, Channel::Voice], 60)
            .unwrap()
            .for_transaction();
        assert_eq!(plan.channels(), [Channel::Sms, Channel::Voice]);
        assert_eq!(plan.first(), Channel::Sms);
        let only = WorkflowPlan::single(Channel::Whatsapp).for_transaction();
        assert_eq!(only.channels(), [Channel::Whatsapp]);
    }
}
