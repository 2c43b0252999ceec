//! Fallback workflows (issue 19): a verification started with several `channels` moves to the
//! next one when its current step fails for good, its receipt says it was not delivered (a
//! call: busy, no answer), or no code approved within `fallback_after_seconds`. Each step is a
//! new code through the start path's guards (allow-list, fraud guard and budgets, send limits),
//! stored in one transaction with the workflow's move, so that it is taken once whichever
//! worker (`dispatch::workflows`) claimed it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::fraud::CodeEvent;
use domain::{
    AppHash, Brand, CodeLength, Message, StepRequest, Verification, VerificationAttempt,
    VerificationId, VerificationPolicy, VerificationStatus,
};
use ports::{DueStep, StepTaken, StoreError};

use crate::usecases::fraud::ClientSignals;
use crate::usecases::verify::{StartError, StartRequest};
use crate::usecases::Services;

/// What a workflow's request repeats at every step, as stored with it.
pub(super) fn step_request(request: &StartRequest, policy: &VerificationPolicy) -> StepRequest {
    StepRequest {
        locale: request.locale.clone(),
        code_length: Some(policy.code_length.digits()),
        app_hash: request
            .app_hash
            .as_ref()
            .map(|hash| hash.as_str().to_owned()),
        brand: request
            .brand
            .as_ref()
            .map(|brand| brand.as_str().to_owned()),
        client_ip: request.client.client_ip.map(|ip| ip.to_string()),
        user_id: request.client.user_id.clone(),
        trusted: request.client.trusted,
    }
}

/// The start request a step repeats, on `channel`. A stored value that no longer parses is
/// dropped (the step goes out with the defaults) rather than stopping the workflow.
fn repeated_request(
    verification: &Verification,
    stored: &StepRequest,
    channel: domain::Channel,
) -> StartRequest {
    StartRequest {
        to: verification.to.clone(),
        channel,
        locale: stored.locale.clone(),
        code_length: stored
            .code_length
            .and_then(|digits| CodeLength::new(i64::from(digits)).ok()),
        app_hash: stored
            .app_hash
            .as_deref()
            .and_then(|hash| AppHash::parse(hash).ok()),
        client: ClientSignals {
            client_ip: stored.client_ip.as_deref().and_then(|ip| ip.parse().ok()),
            user_id: stored.user_id.clone(),
            trusted: stored.trusted,
        },
        brand: stored
            .brand
            .as_deref()
            .and_then(|brand| Brand::parse(brand).ok()),
        workflow: None,
        // The verification's own: its texts and hashes name the payment it was started for.
        transaction: verification.transaction.clone(),
    }
}

/// Why a step was not sent, for the metric: a few fixed words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    /// The verification ended (approved, canceled, expired, out of checks or sends).
    Ended,
    /// A guard refused the code, or its channel is not offered.
    Refused,
    /// The code's text could not be made.
    Unavailable,
}

impl StopKind {
    fn as_str(self) -> &'static str {
        match self {
            StopKind::Ended => "ended",
            StopKind::Refused => "refused",
            StopKind::Unavailable => "unavailable",
        }
    }
}

impl Services {
    /// Refuses a workflow with a channel no provider carries, naming the channel, before
    /// anything is counted.
    pub(super) fn offers_workflow(&self, request: &StartRequest) -> Result<(), StartError> {
        for channel in request.workflow.iter().flat_map(|plan| plan.channels()) {
            self.code_delivery(request, *channel)?;
        }
        Ok(())
    }

    /// After a code the client asked for on a verification with a workflow: the workflow
    /// stands at that channel's step (passing over the ones before it) and its delay starts
    /// again from this send. The code went already, so a failure here is only logged.
    pub(super) async fn follow_resend(
        &self,
        verification: &Verification,
        message: &Message,
        now: DateTime<Utc>,
    ) {
        let followed = async {
            let Some(workflow) = self.workflows.workflow(verification.id).await? else {
                return Ok(());
            };
            if workflow.next_step_at.is_none() {
                return Ok(());
            }
            let step = workflow.step_for_resend(message.channel);
            self.workflows
                .follow_resend(
                    verification.id,
                    step,
                    message.id,
                    workflow.next_due_after(step, now),
                )
                .await
        };
        if let Err(error) = followed.await {
            tracing::warn!(verification_id = %verification.id, %error, "cannot move the workflow to the code resent");
        }
    }

    /// A verification's codes, one per step or resend, oldest first: each one's channel,
    /// provider, receipts and whether it approved.
    pub async fn verification_attempts(
        &self,
        id: VerificationId,
    ) -> Result<Vec<VerificationAttempt>, StoreError> {
        self.workflows.verification_attempts(id).await
    }

    /// Claims up to `limit` workflows whose next step is due and takes each step, holding
    /// each claim for `lease` (a worker that dies loses it then). Returns how many were
    /// claimed.
    pub async fn run_due_steps(&self, limit: u32, lease: Duration) -> Result<usize, StoreError> {
        let due = self
            .workflows
            .claim_due_steps(self.clock.now(), limit, lease)
            .await?;
        let claimed = due.len();
        for step in due {
            self.take_step(step).await;
        }
        Ok(claimed)
    }

    #[tracing::instrument(skip_all, fields(verification_id = %due.verification.id, step = due.workflow.step + 1, reason = %due.reason))]
    async fn take_step(&self, due: DueStep) {
        let DueStep {
            workflow,
            verification,
            reason,
        } = due;
        let now = self.clock.now();
        let from = workflow.step;
        let status = verification.status_at(now);
        if status != VerificationStatus::Pending {
            return self
                .stop(
                    &verification,
                    from,
                    StopKind::Ended,
                    &format!("the verification is {status}"),
                )
                .await;
        }
        let (Some(previous), Some(channel)) = (workflow.current_channel(), workflow.next_channel())
        else {
            return self
                .stop(&verification, from, StopKind::Ended, "no step is left")
                .await;
        };
        if verification.send_count >= verification.max_sends {
            return self
                .stop(
                    &verification,
                    from,
                    StopKind::Ended,
                    "no more codes can be sent for this verification",
                )
                .await;
        }
        let request = repeated_request(&verification, &workflow.request, channel);
        let api_key = verification.api_key.clone();
        let policy = VerificationPolicy {
            code_length: request
                .code_length
                .unwrap_or(self.verification_policy.code_length),
            ..self.verification_policy
        };
        // The start path's guards, in its order: each step is a send like any other.
        let refused = |error: &dyn std::fmt::Display| error.to_string();
        if let Err(refusal) = self.guards.check_destination(&verification.to) {
            return self
                .stop(&verification, from, StopKind::Refused, &refused(&refusal))
                .await;
        }
        let delivery = match self.code_delivery(&request, channel) {
            Ok(delivery) => delivery,
            Err(error) => {
                return self
                    .stop(&verification, from, StopKind::Refused, &refused(&error))
                    .await
            }
        };
        let mut screened = match self
            .fraud_guard
            .screen(&api_key, &verification.to, &request.client, now)
            .await
        {
            Ok(screened) => screened,
            Err(error) => {
                return self
                    .stop(
                        &verification,
                        from,
                        StopKind::Refused,
                        &refused(&StartError::from(error)),
                    )
                    .await
            }
        };
        if let Err(refusal) = self.admit(&api_key, &verification.to, &screened, now).await {
            self.metrics.rate_limit_refused("workflow_step");
            return self
                .stop(&verification, from, StopKind::Refused, &refused(&refusal))
                .await;
        }
        let code = self.new_code(&verification.to, policy.code_length);
        let on_channel = Verification {
            channel,
            ..verification.clone()
        };
        let message =
            match self.code_message(&api_key, &on_channel, &code, &request, &delivery, now) {
                Ok(message) => message,
                Err(error) => {
                    return self
                        .stop(&verification, from, StopKind::Unavailable, &refused(&error))
                        .await
                }
            };
        if let Err(error) = self
            .fraud_guard
            .charge(
                &mut screened,
                &api_key,
                &verification.to,
                message.segments,
                message.id,
                now,
            )
            .await
        {
            return self
                .stop(
                    &verification,
                    from,
                    StopKind::Refused,
                    &refused(&StartError::from(error)),
                )
                .await;
        }
        let step = StepTaken {
            verification_id: verification.id,
            from,
            to: from + 1,
            next_step_at: workflow.next_due_after(from + 1, now),
            now,
        };
        let message_id = message.id;
        // The guard's finding (if any) is written with the step, only if it is taken.
        let finding = self
            .fraud_guard
            .finding(&screened, &api_key, &verification, now);
        let (taken, ()) = tokio::join!(
            self.workflows.take_step(
                &step,
                self.code_hash(&verification, &code),
                message,
                finding
            ),
            self.fraud_guard.count(CodeEvent::Sent, &screened, now)
        );
        match taken {
            Ok(Some((verification, _message))) => {
                self.dispatcher_wake.notify_one();
                self.metrics.fallback(previous, channel, reason);
                // After the step's own transaction: an event lost to a failure here is logged.
                if let Err(error) = self
                    .emit_channel_fallback(&verification, previous, channel)
                    .await
                {
                    tracing::error!(%error, "cannot record a channel_fallback event");
                }
                tracing::info!(from = %previous, to = %channel, send_count = verification.send_count, "verification fell back to its next channel");
            }
            // Another worker took it, or the verification ended or ran out of sends since it
            // was claimed: stopped if it still stands where this worker found it.
            Ok(None) => {
                self.fraud_guard.release(message_id).await;
                self.stop(
                    &verification,
                    from,
                    StopKind::Ended,
                    "the verification ended, or has no sends left",
                )
                .await;
            }
            // The claim lapses and the step is tried again.
            Err(error) => {
                self.fraud_guard.release(message_id).await;
                tracing::error!(%error, "cannot store a workflow step");
            }
        }
    }

    /// Stops a workflow at step `from`, logged with why and counted.
    async fn stop(&self, verification: &Verification, from: u32, kind: StopKind, why: &str) {
        match self
            .workflows
            .stop_workflow(verification.id, from, why)
            .await
        {
            Ok(true) => {
                self.metrics.workflow_stopped(kind.as_str());
                if kind == StopKind::Ended {
                    tracing::info!(to = %verification.to.masked(), reason = why, "workflow ended: no further channel is tried");
                } else {
                    tracing::warn!(to = %verification.to.masked(), reason = why, "workflow step refused: no further channel is tried");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "cannot stop a workflow"),
        }
    }
}
