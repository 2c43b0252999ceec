//! Verifications and their code hashes on PostgreSQL, with their hot statements in batches
//! (see `store_batch`): verifications created, checks counted, pending ones looked up.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    CodeHash, Message, MessageId, NewMessage, PhoneNumber, Transaction, Verification,
    VerificationId, VerificationStatus,
};
use ports::params::{self, Param};
use ports::{
    rows, stored_queued, LoggedDecision, StoreError, VerificationFilter, VerificationStore,
};
use sqlx::postgres::PgRow;
use sqlx::{Connection as _, PgConnection, Row as _};
use store_batch::BatchWrite;
use tracing::instrument;
use uuid::Uuid;

use crate::connections::Connections;
use crate::fraud::log_decision_on;
use crate::messages::{bind_messages, insert_code_message, insert_messages_sql};
use crate::partitions::id_bounds;
use crate::rows::{all, column, execute, optional, query, store_error, Pg};
use crate::PgStore;

/// Stores a code with the message that carries it (a verification's attempts show which
/// message's code approved).
pub(crate) async fn insert_code(
    connection: &mut PgConnection,
    id: VerificationId,
    code: &CodeHash,
    message: MessageId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO verification_codes (verification_id, code_hash, created_at, message_id) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_uuid())
    .bind(code.as_bytes())
    .bind(now)
    .bind(message.as_uuid())
    .execute(&mut *connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// A verification with its first code, the message that carries it, and the fraud guard's
/// finding that let it go (if any).
pub(crate) struct Create {
    verification: Verification,
    code: CodeHash,
    message: NewMessage,
    finding: Option<LoggedDecision>,
}

/// `VerificationStore::create`, in batches (see `store_batch`): the verifications, their
/// codes, their messages and the guard's findings in one statement, the codes and messages
/// checked against their verifications at its end. A finding's action and reasons are read
/// from its verification's `risk` (the same decision), which is serialised once.
pub(crate) struct Creates;

impl BatchWrite for Creates {
    type Pool = Connections;
    type Item = Create;
    type Output = Message;

    async fn write(
        &self,
        connections: &Connections,
        creates: &[Create],
    ) -> Result<Vec<Message>, StoreError> {
        let mut connection = connections.acquire().await?;
        let messages: Vec<_> = creates
            .iter()
            .map(|create| (&create.message, Some(create.verification.id)))
            .collect();
        let v = |value: fn(&Verification) -> i64| column(creates, |c| value(&c.verification));
        let findings: Vec<&LoggedDecision> = creates
            .iter()
            .filter_map(|create| create.finding.as_ref())
            .collect();
        bind_messages(
            concat!(
                r#"WITH verification AS (
                       INSERT INTO verifications (id, "to", channel, api_key, status,
                           check_count, max_checks, send_count, max_sends, expires_at,
                           last_sent_at, created_at, risk, amount, currency, payee,
                           updated_at)
                       SELECT *, created_at
                       FROM unnest($20::uuid[], $21::text[], $22::text[], $23::text[],
                           $24::text[], $25::int8[], $26::int8[], $27::int8[], $28::int8[],
                           $29::timestamptz[], $30::timestamptz[], $31::timestamptz[],
                           $33::text[], $34::text[], $35::text[], $36::text[])
                         AS v (id, "to", channel, api_key, status, check_count, max_checks,
                           send_count, max_sends, expires_at, last_sent_at, created_at, risk,
                           amount, currency, payee)
                   ),
                   code AS (
                       INSERT INTO verification_codes (verification_id, code_hash, created_at,
                           message_id)
                       SELECT * FROM unnest($20::uuid[], $32::bytea[], $31::timestamptz[],
                           $1::uuid[])
                   ),
                   finding AS (
                       INSERT INTO fraud_decisions (id, at, "to", api_key, client_ip,
                           verification_id, action, reasons, user_id, trusted)
                       SELECT d.id, d.at, v."to", v.api_key, d.client_ip, v.id,
                           v.risk::jsonb ->> 'action', v.risk::jsonb -> 'reasons', d.user_id,
                           d.trusted
                       FROM unnest($37::uuid[], $38::timestamptz[], $39::text[], $40::uuid[],
                           $41::text[], $42::bool[])
                         AS d (id, at, client_ip, verification_id, user_id, trusted)
                       JOIN unnest($20::uuid[], $21::text[], $23::text[], $33::text[])
                         AS v (id, "to", api_key, risk) ON v.id = d.verification_id
                   )
                   "#,
                insert_messages_sql!(),
                " RETURNING id"
            ),
            &messages,
        )
        .bind(column(creates, |c| c.verification.id.as_uuid()))
        .bind(column(creates, |c| c.verification.to.as_str()))
        .bind(column(creates, |c| c.verification.channel.as_str()))
        .bind(column(creates, |c| c.verification.api_key.as_str()))
        .bind(column(creates, |c| c.verification.status.as_str()))
        .bind(v(|v| i64::from(v.check_count)))
        .bind(v(|v| i64::from(v.max_checks)))
        .bind(v(|v| i64::from(v.send_count)))
        .bind(v(|v| i64::from(v.max_sends)))
        .bind(column(creates, |c| c.verification.expires_at))
        .bind(column(creates, |c| c.verification.last_sent_at))
        .bind(column(creates, |c| c.verification.created_at))
        .bind(column(creates, |c| c.code.as_bytes()))
        .bind(column(creates, |c| params::risk_json(&c.verification)))
        .bind(column(creates, |c| {
            transaction_part(c, |t| t.amount.as_str())
        }))
        .bind(column(creates, |c| {
            transaction_part(c, |t| t.currency.as_str())
        }))
        .bind(column(creates, |c| {
            transaction_part(c, |t| t.payee.as_str())
        }))
        .bind(column(&findings, |f| f.id))
        .bind(column(&findings, |f| f.at))
        .bind(column(&findings, |f| f.client_ip.as_deref()))
        .bind(column(&findings, |f| {
            f.verification_id.map(|id| id.as_uuid())
        }))
        .bind(column(&findings, |f| f.user_id.as_deref()))
        .bind(column(&findings, |f| f.trusted))
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        Ok(column(creates, |c| {
            stored_queued(&c.message, Some(c.verification.id))
        }))
    }
}

/// A part of a created verification's transaction, if it has one.
fn transaction_part(create: &Create, part: fn(&Transaction) -> &str) -> Option<&str> {
    create.verification.transaction.as_ref().map(part)
}

/// One check to count.
pub(crate) struct Check {
    id: VerificationId,
    api_key: String,
    now: DateTime<Utc>,
}

/// `VerificationStore::count_check`, in batches (see `store_batch`): one statement counts the
/// checks of a burst (a round per repeat of a verification, see [`rounds`]).
pub(crate) struct Checks;

/// Counts checks of different verifications. Their rows are locked first, in one order, so that
/// two batches holding the same verifications cannot deadlock. The statement's snapshot may
/// predate a code added while it waited for a row, but no one can hold that code yet (it is
/// sent only after its commit). `$4` and `$5` bound the ids (`id_bounds`), and a verification's
/// codes are in its week.
const COUNT_CHECKS: &str = r#"
    WITH asked AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS a (id, api_key, now)
    ),
    locked AS MATERIALIZED (
        SELECT id FROM verifications
        WHERE id IN (SELECT id FROM asked) AND id >= $4 AND id <= $5
        ORDER BY id FOR NO KEY UPDATE
    ),
    counted AS (
        UPDATE verifications AS v
        SET check_count = v.check_count + 1, updated_at = a.now
        FROM asked AS a
        WHERE v.id = a.id AND v.id IN (SELECT id FROM locked) AND v.api_key = a.api_key
          AND v.status = 'pending' AND v.expires_at > a.now AND v.check_count < v.max_checks
          AND v.id >= $4 AND v.id <= $5
        RETURNING v.*
    )
    SELECT counted.*, ARRAY(
        SELECT code_hash FROM verification_codes
        WHERE verification_id = counted.id AND verification_id >= $4 AND verification_id <= $5
        ORDER BY id
    ) AS code_hashes
    FROM counted"#;

impl BatchWrite for Checks {
    type Pool = Connections;
    type Item = Check;
    type Output = Option<(Verification, Vec<CodeHash>)>;

    async fn write(
        &self,
        connections: &Connections,
        checks: &[Check],
    ) -> Result<Vec<Self::Output>, StoreError> {
        let rounds = rounds(checks);
        let mut connection = connections.acquire().await?;
        // Several rounds are one transaction, so that a batch that fails (and is then retried
        // check by check) has counted nothing. Generic plans: a custom plan, which PostgreSQL
        // keeps choosing for this statement, plans it again on every execution, costing more
        // than the generic plan's pruning at the executor's start (docs/performance.md, "The
        // checks' plans").
        let mut transaction = connection.begin().await.map_err(store_error)?;
        sqlx::query("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        let counted = count_rounds(&mut transaction, checks, rounds).await?;
        transaction.commit().await.map_err(store_error)?;
        connection.park();
        Ok(counted)
    }
}

/// Counts `checks` round after round on `connection`, each check's row in its place.
async fn count_rounds(
    connection: &mut PgConnection,
    checks: &[Check],
    rounds: Vec<Vec<usize>>,
) -> Result<Vec<<Checks as BatchWrite>::Output>, StoreError> {
    let mut counted: Vec<_> = checks.iter().map(|_| None).collect();
    for round in rounds {
        let ids = column(&round, |&i| checks[i].id.as_uuid());
        let (least, greatest) = id_bounds(ids.iter().copied());
        let found: Vec<PgRow> = sqlx::query(COUNT_CHECKS)
            .bind(ids)
            .bind(column(&round, |&i| checks[i].api_key.as_str()))
            .bind(column(&round, |&i| checks[i].now))
            .bind(least)
            .bind(greatest)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        for row in found {
            let hashes: Vec<Vec<u8>> = row.try_get("code_hashes").map_err(store_error)?;
            let verification = rows::verification(&Pg(row))?;
            let index = round
                .iter()
                .copied()
                .find(|&i| checks[i].id == verification.id)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("counted an unasked check of {}", verification.id))
                })?;
            let hashes = hashes.into_iter().map(CodeHash::from_bytes).collect();
            counted[index] = Some((verification, hashes));
        }
    }
    Ok(counted)
}

/// The checks' indexes in rounds that hold each verification at most once, in the checks'
/// order: a statement updates a row once, so checks of one verification that arrive together
/// are counted one round after another, each seeing the count the one before left.
fn rounds(checks: &[Check]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<VerificationId, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (index, check) in checks.iter().enumerate() {
        let round = *seen
            .entry(check.id)
            .and_modify(|round| *round += 1)
            .or_insert(0);
        match rounds.get_mut(round) {
            Some(checks) => checks.push(index),
            None => rounds.push(vec![index]),
        }
    }
    rounds
}

/// One lookup of a number's pending verification.
pub(crate) struct Lookup {
    to: String,
    api_key: String,
    now: DateTime<Utc>,
}

/// `VerificationStore::find_pending`, in batches (see `store_batch`): the lookups of a burst of
/// starts are one statement, each reading only the weeks a verification pending at its `now`
/// can be in ([`pending_ids`]).
pub(crate) struct Lookups;

/// Each lookup's pending verification, numbered as asked (`n`); a lookup that finds none has
/// no row. `$4` and `$5` bound the ids as constants, so that the planner reads only the weeks
/// between them (an expression of the row could not prune).
const FIND_PENDING: &str = r#"
    SELECT asked.n, pending.*
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
        AS asked ("to", api_key, now, n)
    CROSS JOIN LATERAL (
        SELECT * FROM verifications AS v
        WHERE v."to" = asked."to" AND v.api_key = asked.api_key AND v.status = 'pending'
          AND v.expires_at > asked.now AND v.id >= $4 AND v.id < $5
        ORDER BY v.created_at DESC
        LIMIT 1
    ) AS pending"#;

/// How far apart the clocks of instances minting ids (and of the one looking) may be.
pub(crate) const CLOCK_SKEW: TimeDelta = TimeDelta::hours(1);

/// The ids a verification pending at any of `nows` can have: minted since the longest
/// lifetime before the earliest, and before the latest (allowing for skew). Ids are minted by
/// this machine's clock (UUIDv7) and times by the service's `Clock`, the same in production;
/// the bounds hold for either, so that a clock set in a test never hides a verification.
fn pending_ids(nows: impl Iterator<Item = DateTime<Utc>> + Clone) -> (Uuid, Uuid) {
    let system = Utc::now();
    let earliest = nows.clone().fold(system, DateTime::min);
    let latest = nows.fold(system, DateTime::max);
    (
        uuid_at(earliest - Verification::LONGEST_LIFETIME - CLOCK_SKEW),
        uuid_at(latest + CLOCK_SKEW),
    )
}

/// The smallest UUIDv7 minted at `at`'s millisecond, as `sms_notify_uuid_at` (migration 0037).
pub(crate) fn uuid_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or_default();
    let mut bytes = [0; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

impl BatchWrite for Lookups {
    type Pool = Connections;
    type Item = Lookup;
    type Output = Option<Verification>;

    async fn write(
        &self,
        connections: &Connections,
        lookups: &[Lookup],
    ) -> Result<Vec<Option<Verification>>, StoreError> {
        let (from, until) = pending_ids(lookups.iter().map(|lookup| lookup.now));
        let mut connection = connections.acquire().await?;
        let found: Vec<PgRow> = sqlx::query(FIND_PENDING)
            .bind(column(lookups, |l| l.to.as_str()))
            .bind(column(lookups, |l| l.api_key.as_str()))
            .bind(column(lookups, |l| l.now))
            .bind(from)
            .bind(until)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        connection.park();
        let mut pending: Vec<Option<Verification>> = lookups.iter().map(|_| None).collect();
        for row in found {
            let n: i64 = row.try_get("n").map_err(store_error)?;
            let slot = usize::try_from(n - 1)
                .ok()
                .and_then(|index| pending.get_mut(index))
                .ok_or_else(|| StoreError::Corrupt(format!("found an unasked lookup {n}")))?;
            *slot = Some(rows::verification(&Pg(row))?);
        }
        Ok(pending)
    }
}

#[async_trait]
impl VerificationStore for PgStore {
    /// The message is stored as the carrier of this verification's code whatever its
    /// `verification_id` says, so that its body is forgotten once it has been sent.
    #[instrument(level = "debug", skip_all, fields(verification_id = %verification.id))]
    async fn create(
        &self,
        verification: &Verification,
        code: CodeHash,
        message: NewMessage,
        finding: Option<LoggedDecision>,
    ) -> Result<Message, StoreError> {
        let queued = self
            .batched
            .creates
            .write(Create {
                verification: verification.clone(),
                code,
                message,
                finding,
            })
            .await?;
        self.queue_notifier.queued(queued.id);
        Ok(queued)
    }

    async fn list(&self, filter: &VerificationFilter) -> Result<Vec<Verification>, StoreError> {
        // Only the conditions the filter sets (see `params::verification_conditions`).
        let sql = format!(
            "SELECT * FROM verifications WHERE {} ORDER BY created_at DESC, id DESC LIMIT $8",
            params::verification_conditions(filter)
        );
        let page = query(&sql, &params::verification_filter(filter));
        all(page, &self.pool, rows::verification).await
    }

    async fn get(&self, id: VerificationId) -> Result<Option<Verification>, StoreError> {
        let get = query(
            "SELECT * FROM verifications WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        optional(get, &self.pool, rows::verification).await
    }

    async fn get_many(&self, ids: &[VerificationId]) -> Result<Vec<Verification>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let uuids: Vec<Uuid> = ids.iter().map(VerificationId::as_uuid).collect();
        let found = sqlx::query("SELECT * FROM verifications WHERE id = ANY($1)").bind(uuids);
        all(found, &self.pool, rows::verification).await
    }

    async fn find_pending(
        &self,
        to: &PhoneNumber,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Verification>, StoreError> {
        self.batched
            .lookups
            .write(Lookup {
                to: to.as_str().to_owned(),
                api_key: api_key.to_owned(),
                now,
            })
            .await
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn add_code(
        &self,
        id: VerificationId,
        code: CodeHash,
        message: NewMessage,
        now: DateTime<Utc>,
        last_sent_before: DateTime<Utc>,
        finding: Option<LoggedDecision>,
    ) -> Result<Option<(Verification, Message)>, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // The row lock this takes makes concurrent resends wait, then fail the interval test
        // against the winner's `last_sent_at`.
        let resend = query(
            r#"UPDATE verifications
               SET send_count = send_count + 1, last_sent_at = $2, updated_at = $2,
                   channel = $4
               WHERE id = $1 AND status = 'pending' AND expires_at > $2
                 AND send_count < max_sends AND last_sent_at <= $3
               RETURNING *"#,
            &[
                Param::id(id.as_uuid()),
                Param::time(now),
                Param::time(last_sent_before),
                Param::text(message.channel.as_str()),
            ],
        );
        let Some(verification) = optional(resend, &mut *transaction, rows::verification).await?
        else {
            return Ok(None);
        };
        insert_code(&mut transaction, id, &code, message.id, now).await?;
        let queued = insert_code_message(&mut transaction, &message, id).await?;
        if let Some(finding) = &finding {
            log_decision_on(&mut transaction, finding).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        self.queue_notifier.queued(queued.id);
        Ok(Some((verification, queued)))
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id))]
    async fn count_check(
        &self,
        id: VerificationId,
        api_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Verification, Vec<CodeHash>)>, StoreError> {
        self.batched
            .checks
            .write(Check {
                id,
                api_key: api_key.to_owned(),
                now,
            })
            .await
    }

    #[instrument(level = "debug", skip_all, fields(verification_id = %id, status = %status))]
    async fn conclude(
        &self,
        id: VerificationId,
        status: VerificationStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let from: Vec<&str> = VerificationStatus::able_to_become(status)
            .map(VerificationStatus::as_str)
            .collect();
        if from.is_empty() {
            return Ok(false);
        }
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let concluded = sqlx::query(
            "UPDATE verifications SET status = $2, updated_at = $3 \
             WHERE id = $1 AND status = ANY($4)",
        )
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(now)
        .bind(from);
        if execute(concluded, &mut *transaction).await? != 1 {
            return Ok(false);
        }
        // Its codes are useless now: those still queued are never sent, and one being sent
        // right now is not sent again should its attempt end in a retry.
        let codes = [Param::id(id.as_uuid()), Param::time(now)];
        let expire = query(
            "UPDATE messages SET status = 'expired', body = '', updated_at = $2 \
             WHERE verification_id = $1 AND status = 'queued'",
            &codes,
        );
        execute(expire, &mut *transaction).await?;
        let cut_short = query(
            "UPDATE messages SET send_before = $2 \
             WHERE verification_id = $1 AND status = 'sending' \
             AND (send_before IS NULL OR send_before > $2)",
            &codes,
        );
        execute(cut_short, &mut *transaction).await?;
        transaction.commit().await.map_err(store_error)?;
        self.events_may_be_recorded();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_of_one_verification_go_to_successive_rounds_in_their_order() {
        let (a, b, c) = (
            VerificationId::generate(),
            VerificationId::generate(),
            VerificationId::generate(),
        );
        let checks: Vec<Check> = [a, b, a, c, a, b]
            .into_iter()
            .map(|id| Check {
                id,
                api_key: "auth".into(),
                now: Utc::now(),
            })
            .collect();
        assert_eq!(rounds(&checks), [vec![0, 1, 3], vec![2, 5], vec![4]]);
    }
}
