//! Fallback workflows on PostgreSQL: claimed with `FOR UPDATE SKIP LOCKED` and a lease, and a
//! step taken only from the step its worker claimed, so that no step runs twice.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    CodeHash, Message, MessageId, NewMessage, Verification, VerificationAttempt, VerificationId,
    Workflow,
};
use ports::params::{self, Param};
use ports::{rows, DueStep, LoggedDecision, StepTaken, StoreError, WorkflowStore};
use tracing::instrument;

use crate::fraud::log_decision_on;
use crate::messages::insert_code_message;
use crate::rows::{all, execute, optional, query, store_error};
use crate::verifications::insert_code;
use crate::PgStore;

/// Due workflows: the delay passed, or the step's message failed or was not delivered; none
/// another worker holds. Claimed in order of their delays, the oldest first.
const CLAIM_DUE_STEPS: &str = r#"
    WITH due AS (
        SELECT w.verification_id FROM verification_workflows AS w
        LEFT JOIN messages AS m ON m.id = w.step_message_id
        WHERE w.next_step_at IS NOT NULL
          AND (w.claimed_until IS NULL OR w.claimed_until <= $1)
          AND (w.next_step_at <= $1 OR m.status IN ('failed', 'undelivered'))
          AND EXISTS (SELECT 1 FROM verifications AS v WHERE v.id = w.verification_id)
        ORDER BY w.next_step_at
        LIMIT $2
        FOR UPDATE OF w SKIP LOCKED
    ),
    claimed AS (
        UPDATE verification_workflows AS w SET claimed_until = $3
        FROM due WHERE w.verification_id = due.verification_id
        RETURNING w.*
    )
    SELECT claimed.*, v.*, m.status AS step_message_status
    FROM claimed
    JOIN verifications AS v ON v.id = claimed.verification_id
    LEFT JOIN messages AS m ON m.id = claimed.step_message_id"#;

/// Whether [`CLAIM_DUE_STEPS`] could find anything: a workflow with a step ahead that no worker
/// holds. Asked first because the claim, joining every week of `messages` and `verifications`,
/// is planned anew on most of the pool's connections, at a cost that grows with the weeks kept,
/// while most polls find no workflow at all (none is started without a fallback).
const ANY_STEP_AHEAD: &str = "SELECT EXISTS (SELECT 1 FROM verification_workflows \
     WHERE next_step_at IS NOT NULL AND (claimed_until IS NULL OR claimed_until <= $1))";

/// A verification's code messages with when each was sent and delivered, and its code's
/// approval.
const ATTEMPTS: &str = r#"
    SELECT m.*, c.approved_at,
        (SELECT min(a.finished_at) FROM message_attempts AS a
         WHERE a.message_id = m.id AND a.outcome = 'sent') AS sent_at,
        (SELECT min(e.received_at) FROM message_events AS e
         WHERE e.message_id = m.id AND e.status = 'delivered') AS delivered_at
    FROM verification_codes AS c
    JOIN messages AS m ON m.id = c.message_id
    WHERE c.verification_id = $1
    ORDER BY c.id"#;

fn seconds(delay: TimeDelta) -> i64 {
    delay.num_seconds()
}

#[async_trait]
impl WorkflowStore for PgStore {
    #[instrument(level = "debug", skip_all, fields(verification_id = %workflow.verification_id))]
    async fn start_workflow(&self, workflow: &Workflow) -> Result<(), StoreError> {
        let channels = workflow.plan.channels_text();
        let request = params::step_request_json(&workflow.request);
        let insert = query(
            "INSERT INTO verification_workflows (verification_id, channels, \
             fallback_after_seconds, step, step_message_id, next_step_at, request) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                Param::id(workflow.verification_id.as_uuid()),
                Param::text(&channels),
                Param::Integer(Some(seconds(workflow.plan.fallback_after()))),
                Param::count(workflow.step),
                Param::Id(workflow.step_message_id.map(|id| id.as_uuid())),
                Param::Time(workflow.next_step_at),
                Param::text(&request),
            ],
        );
        execute(insert, &self.pool).await?;
        Ok(())
    }

    async fn workflow(&self, id: VerificationId) -> Result<Option<Workflow>, StoreError> {
        let get = query(
            "SELECT * FROM verification_workflows WHERE verification_id = $1",
            &[Param::id(id.as_uuid())],
        );
        optional(get, &self.pool, rows::workflow).await
    }

    async fn claim_due_steps(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueStep>, StoreError> {
        let any: bool = sqlx::query_scalar(ANY_STEP_AHEAD)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        if !any {
            return Ok(Vec::new());
        }
        let lease = TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX);
        let claim = query(
            CLAIM_DUE_STEPS,
            &[
                Param::time(now),
                Param::count(limit),
                Param::time(now + lease),
            ],
        );
        all(claim, &self.pool, rows::due_step).await
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %step.verification_id, step = step.to))]
    async fn take_step(
        &self,
        step: &StepTaken,
        code: CodeHash,
        message: NewMessage,
        finding: Option<LoggedDecision>,
    ) -> Result<Option<(Verification, Message)>, StoreError> {
        let id = step.verification_id;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // The row lock this takes makes a second worker with the same claim wait, then find
        // the workflow moved on.
        let moved = query(
            "UPDATE verification_workflows \
             SET step = $2, step_message_id = $3, next_step_at = $4, claimed_until = NULL \
             WHERE verification_id = $1 AND step = $5 AND next_step_at IS NOT NULL",
            &[
                Param::id(id.as_uuid()),
                Param::count(step.to),
                Param::id(message.id.as_uuid()),
                Param::Time(step.next_step_at),
                Param::count(step.from),
            ],
        );
        if execute(moved, &mut *transaction).await? != 1 {
            return Ok(None);
        }
        let sent = query(
            r#"UPDATE verifications
               SET send_count = send_count + 1, last_sent_at = $2, updated_at = $2,
                   channel = $3
               WHERE id = $1 AND status = 'pending' AND expires_at > $2
                 AND send_count < max_sends
               RETURNING *"#,
            &[
                Param::id(id.as_uuid()),
                Param::time(step.now),
                Param::text(message.channel.as_str()),
            ],
        );
        let Some(verification) = optional(sent, &mut *transaction, rows::verification).await?
        else {
            return Ok(None);
        };
        insert_code(&mut transaction, id, &code, message.id, step.now).await?;
        let queued = insert_code_message(&mut transaction, &message, id).await?;
        if let Some(finding) = &finding {
            log_decision_on(&mut transaction, finding).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        self.queue_notifier.queued(queued.id);
        Ok(Some((verification, queued)))
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn stop_workflow(
        &self,
        id: VerificationId,
        from: u32,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let stop = query(
            "UPDATE verification_workflows \
             SET next_step_at = NULL, claimed_until = NULL, stopped_reason = $3 \
             WHERE verification_id = $1 AND step = $2 AND next_step_at IS NOT NULL",
            &[
                Param::id(id.as_uuid()),
                Param::count(from),
                Param::text(reason),
            ],
        );
        Ok(execute(stop, &self.pool).await? == 1)
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn follow_resend(
        &self,
        id: VerificationId,
        step: u32,
        message: MessageId,
        next_step_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let follow = query(
            "UPDATE verification_workflows \
             SET step = GREATEST(step, $2), step_message_id = $3, next_step_at = $4 \
             WHERE verification_id = $1 AND next_step_at IS NOT NULL",
            &[
                Param::id(id.as_uuid()),
                Param::count(step),
                Param::id(message.as_uuid()),
                Param::Time(next_step_at),
            ],
        );
        execute(follow, &self.pool).await?;
        Ok(())
    }

    async fn verification_attempts(
        &self,
        id: VerificationId,
    ) -> Result<Vec<VerificationAttempt>, StoreError> {
        let attempts = query(ATTEMPTS, &[Param::id(id.as_uuid())]);
        all(attempts, &self.pool, rows::verification_attempt).await
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn record_approval(
        &self,
        id: VerificationId,
        code: &CodeHash,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            // The verification's id first: it names the code's partition.
            "UPDATE verification_codes SET approved_at = $3 WHERE verification_id = $1 AND id = ( \
                 SELECT id FROM verification_codes \
                 WHERE verification_id = $1 AND code_hash = $2 ORDER BY id LIMIT 1)",
        )
        .bind(id.as_uuid())
        .bind(code.as_bytes())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)
        .map(|_| ())
    }
}
