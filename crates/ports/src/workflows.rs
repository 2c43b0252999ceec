//! The store port of fallback workflows: a verification's steps kept in the database, so that
//! a restart or another instance continues a workflow, and a claim that keeps two workers from
//! taking one step.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    CodeHash, FallbackReason, Message, MessageId, NewMessage, Verification, VerificationAttempt,
    VerificationId, Workflow,
};

use crate::{LoggedDecision, StoreError};

/// A workflow whose next step a worker has claimed, and why the step is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueStep {
    pub workflow: Workflow,
    pub verification: Verification,
    pub reason: FallbackReason,
}

/// A step to record: the workflow moves from step `from` (the one claimed) to step `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTaken {
    pub verification_id: VerificationId,
    pub from: u32,
    pub to: u32,
    /// When the step after this one is due without news; `None` after the last.
    pub next_step_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// Workflows, their steps, and what a verification's attempts show.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database fails.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Stores a workflow, before its verification is created: a workflow whose verification
    /// never is is never claimed.
    async fn start_workflow(&self, workflow: &Workflow) -> Result<(), StoreError>;

    async fn workflow(&self, id: VerificationId) -> Result<Option<Workflow>, StoreError>;

    /// Claims up to `limit` workflows whose next step is due at `now`: its delay has passed,
    /// or the message of the step sent last has `failed` or is `undelivered`, and no other
    /// claim of it holds. Each is held until `now + lease`, so no other caller takes it before;
    /// a worker that dies loses its claim when the lease ends. A workflow whose verification
    /// is no longer pending at `now` (approved, canceled, expired, out of checks) has its
    /// steps stopped instead of being claimed.
    async fn claim_due_steps(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueStep>, StoreError>;

    /// Records a step in one transaction: the workflow moves from `step.from` to `step.to`
    /// (its new step message `message`), the verification counts a send (its channel the
    /// message's), the code and its message are stored. Only while the workflow is still at
    /// `step.from` with a next step, and the verification pending at `step.now` with sends left;
    /// `None` otherwise, nothing stored: a step is never taken twice. The guard's `finding`
    /// that let the step's code go, if any, joins the decision log in the same transaction.
    async fn take_step(
        &self,
        step: &StepTaken,
        code: CodeHash,
        message: NewMessage,
        finding: Option<LoggedDecision>,
    ) -> Result<Option<(Verification, Message)>, StoreError>;

    /// Stops a workflow still at step `from`: no further step, `reason` kept. `false` when it
    /// had moved on or stopped.
    async fn stop_workflow(
        &self,
        id: VerificationId,
        from: u32,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// After a code the client asked for (a resend, maybe on another channel): the workflow,
    /// if it still has a next step, stands at step `step` (never earlier than it stood), its
    /// step message `message`, its next step due at `next_step_at`.
    async fn follow_resend(
        &self,
        id: VerificationId,
        step: u32,
        message: MessageId,
        next_step_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// The verification's code messages, oldest first, with whether each one's code approved.
    async fn verification_attempts(
        &self,
        id: VerificationId,
    ) -> Result<Vec<VerificationAttempt>, StoreError>;

    /// Marks the code of the verification whose hash is `code` as the one that approved it.
    async fn record_approval(
        &self,
        id: VerificationId,
        code: &CodeHash,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
