//! The fraud guard's signals and state on PostgreSQL ([`ports::FraudStore`]). The code counts,
//! written for every code, and the decision log's refusals (every code to a blocked range) go
//! in batches (see `store_batch`); the finding of a code that went is written with its
//! verification (`verifications.rs`); the rest is an admin's or a rare write.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::budget::SpendCap;
use domain::fraud::{Action, Block, CodeCounts, CodeEvent, Mode, Policy, Prefix, SignalKey};
use domain::pumping::hour_of;
use domain::{Amount, MessageId};
use ports::params::{self, Param};
use ports::{
    messages_reserved_for, rows, spend_to_give_back, DecisionFilter, FraudStore, LoggedDecision,
    ReservedSpend, SafeEntry, SpendReservation, StoreError,
};
use sqlx::PgConnection;
use store_batch::BatchWrite;

use crate::connections::Connections;
use crate::rows::{all, column, execute, query, store_error};
use crate::PgStore;

/// One code's event, to count for each of its keys in one hour.
pub(crate) struct CodeCount {
    event: CodeEvent,
    keys: Vec<SignalKey>,
    hour: DateTime<Utc>,
}

/// `FraudStore::count_code`, in batches: every code of a country adds to one row per hour, so
/// one by one they would wait for each other's commits. The rows are written in key order, so
/// concurrent batches lock them in one order and never deadlock. The commit does not wait for
/// its flush: a count lost to a server crash skews a judgement by one code (as the pumping
/// alarm's counts, `rate_limits`).
pub(crate) struct CodeCounter;

impl BatchWrite for CodeCounter {
    type Pool = Connections;
    type Item = CodeCount;
    type Output = ();

    async fn write(
        &self,
        connections: &Connections,
        counts: &[CodeCount],
    ) -> Result<Vec<()>, StoreError> {
        let (mut scopes, mut keys, mut hours) = (Vec::new(), Vec::new(), Vec::new());
        let mut increments: [Vec<i64>; 4] = Default::default();
        for count in counts {
            for key in &count.keys {
                scopes.push(key.scope.as_str());
                keys.push(key.value.as_str());
                hours.push(count.hour);
                for (column, event) in increments.iter_mut().zip(EVENTS) {
                    column.push(i64::from(count.event == event));
                }
            }
        }
        let [sent, refused, checked, approved] = increments;
        let mut connection = connections.acquire().await?;
        sqlx::query(
            "WITH skip AS (SELECT set_config('synchronous_commit', 'off', true)), \
             counts AS ( \
                 SELECT scope, key, hour, sum(sent)::int8 AS sent, sum(refused)::int8 AS refused, \
                        sum(checked)::int8 AS checked, sum(approved)::int8 AS approved \
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], \
                             $4::int8[], $5::int8[], $6::int8[], $7::int8[]) \
                     AS c (scope, key, hour, sent, refused, checked, approved) \
                 GROUP BY scope, key, hour \
             ) \
             INSERT INTO fraud_code_counts (scope, key, hour, sent, refused, checked, approved) \
             SELECT scope, key, hour, sent, refused, checked, approved FROM counts, skip \
             ORDER BY scope COLLATE \"C\", key COLLATE \"C\", hour \
             ON CONFLICT (scope, key, hour) DO UPDATE SET \
                 sent = fraud_code_counts.sent + EXCLUDED.sent, \
                 refused = fraud_code_counts.refused + EXCLUDED.refused, \
                 checked = fraud_code_counts.checked + EXCLUDED.checked, \
                 approved = fraud_code_counts.approved + EXCLUDED.approved",
        )
        .bind(scopes)
        .bind(keys)
        .bind(hours)
        .bind(sent)
        .bind(refused)
        .bind(checked)
        .bind(approved)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        Ok(vec![(); counts.len()])
    }
}

/// `FraudStore::log_decision`, in batches: while a range is blocked every code to it is
/// refused and logged, so one by one the log's inserts would each cost a statement, a commit
/// and a connection check-out on the request path. Each caller is answered once its row is
/// durable.
pub(crate) struct DecisionLogger;

impl BatchWrite for DecisionLogger {
    type Pool = Connections;
    type Item = LoggedDecision;
    type Output = ();

    async fn write(
        &self,
        connections: &Connections,
        entries: &[LoggedDecision],
    ) -> Result<Vec<()>, StoreError> {
        let mut connection = connections.acquire().await?;
        sqlx::query(
            r#"INSERT INTO fraud_decisions
                   (id, at, "to", api_key, client_ip, verification_id, action, reasons,
                    user_id, trusted)
               SELECT id, at, "to", api_key, client_ip, verification_id, action,
                      reasons::jsonb, user_id, trusted
               FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                           $6::uuid[], $7::text[], $8::text[], $9::text[], $10::bool[])
                   AS d (id, at, "to", api_key, client_ip, verification_id, action, reasons,
                         user_id, trusted)"#,
        )
        .bind(column(entries, |entry| entry.id))
        .bind(column(entries, |entry| entry.at))
        .bind(column(entries, |entry| entry.to.as_str()))
        .bind(column(entries, |entry| entry.api_key.as_str()))
        .bind(column(entries, |entry| entry.client_ip.as_deref()))
        .bind(column(entries, |entry| {
            entry.verification_id.map(|id| id.as_uuid())
        }))
        .bind(column(entries, |entry| entry.decision.action.as_str()))
        .bind(column(entries, |entry| {
            params::reasons_json(&entry.decision.reasons)
        }))
        .bind(column(entries, |entry| entry.user_id.as_deref()))
        .bind(column(entries, |entry| entry.trusted))
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        Ok(vec![(); entries.len()])
    }
}

/// Adds `entry` to the decision log on `connection`: in the transaction of the resend or
/// fallback step whose code the finding let go.
pub(crate) async fn log_decision_on(
    connection: &mut PgConnection,
    entry: &LoggedDecision,
) -> Result<(), StoreError> {
    let reasons = params::reasons_json(&entry.decision.reasons);
    let log = query(
        r#"INSERT INTO fraud_decisions
               (id, at, "to", api_key, client_ip, verification_id, action, reasons,
                user_id, trusted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)"#,
        &params::logged_decision(entry, &reasons),
    );
    execute(log, &mut *connection).await?;
    Ok(())
}

/// The events in the order of the count columns.
const EVENTS: [CodeEvent; 4] = [
    CodeEvent::Sent,
    CodeEvent::Refused,
    CodeEvent::Checked,
    CodeEvent::Approved,
];

/// The columns of `fraud_blocks` as `rows::block` reads them.
const BLOCK_COLUMNS: &str =
    "prefix, reasons::text AS reasons, codes, created_at, renewed_at, expires_at";

#[async_trait]
impl FraudStore for PgStore {
    async fn count_code(
        &self,
        event: CodeEvent,
        keys: &[SignalKey],
        asked_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        self.batched
            .code_counts
            .write(CodeCount {
                event,
                keys,
                hour: hour_of(asked_at),
            })
            .await
    }

    async fn code_counts(
        &self,
        keys: &[SignalKey],
        since: DateTime<Utc>,
    ) -> Result<Vec<(SignalKey, CodeCounts)>, StoreError> {
        let counts = sqlx::query(
            "SELECT scope, key, hour, sent, refused, checked, approved FROM fraud_code_counts \
             WHERE (scope, key) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
               AND hour >= $3 \
             ORDER BY scope COLLATE \"C\", key COLLATE \"C\", hour",
        )
        .bind(
            keys.iter()
                .map(|key| key.scope.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            keys.iter()
                .map(|key| key.value.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(since);
        all(counts, &self.pool, rows::code_counts).await
    }

    async fn forget_counts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let forget = query(
            "DELETE FROM fraud_code_counts WHERE hour < $1",
            &[Param::time(before)],
        );
        execute(forget, &self.pool).await
    }

    async fn place_block(&self, block: &Block) -> Result<bool, StoreError> {
        let reasons = params::reasons_json(&block.reasons);
        let place = query(
            "INSERT INTO fraud_blocks \
                 (prefix, reasons, codes, created_at, renewed_at, expires_at, manual) \
             VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7) \
             ON CONFLICT (prefix) DO UPDATE SET \
                 reasons = EXCLUDED.reasons, codes = EXCLUDED.codes, \
                 created_at = EXCLUDED.created_at, renewed_at = EXCLUDED.renewed_at, \
                 expires_at = EXCLUDED.expires_at, manual = EXCLUDED.manual \
             WHERE EXCLUDED.manual \
                OR (fraud_blocks.expires_at IS NOT NULL \
                    AND fraud_blocks.expires_at <= EXCLUDED.created_at)",
            &params::block(block, &reasons),
        );
        Ok(execute(place, &self.pool).await? == 1)
    }

    async fn renew_block(&self, block: &Block) -> Result<bool, StoreError> {
        let renew = query(
            "UPDATE fraud_blocks SET codes = $2, renewed_at = $3, expires_at = $4 \
             WHERE prefix = $1 AND NOT manual \
               AND expires_at IS NOT NULL AND expires_at > $3",
            &params::renewal(block),
        );
        Ok(execute(renew, &self.pool).await? == 1)
    }

    async fn unblock(&self, prefix: &Prefix, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let lift = query(
            "UPDATE fraud_blocks SET expires_at = $2 \
             WHERE prefix = $1 AND (expires_at IS NULL OR expires_at > $2)",
            &params::prefix_at(prefix, now),
        );
        Ok(execute(lift, &self.pool).await? == 1)
    }

    async fn blocks(&self, now: DateTime<Utc>) -> Result<Vec<Block>, StoreError> {
        let sql = format!(
            "SELECT {BLOCK_COLUMNS} FROM fraud_blocks \
             WHERE expires_at IS NULL OR expires_at > $1 \
             ORDER BY prefix COLLATE \"C\""
        );
        all(query(&sql, &[Param::time(now)]), &self.pool, rows::block).await
    }

    async fn add_safe(&self, entry: &SafeEntry) -> Result<(), StoreError> {
        let add = query(
            "INSERT INTO fraud_safe_list (prefix, note, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (prefix) DO UPDATE SET note = EXCLUDED.note, added_at = EXCLUDED.added_at",
            &params::safe_entry(entry),
        );
        execute(add, &self.pool).await?;
        Ok(())
    }

    async fn remove_safe(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        let remove = query(
            "DELETE FROM fraud_safe_list WHERE prefix = $1",
            &[Param::text(prefix.as_str())],
        );
        Ok(execute(remove, &self.pool).await? == 1)
    }

    async fn safe_list(&self) -> Result<Vec<SafeEntry>, StoreError> {
        let list = query(
            "SELECT prefix, note, added_at FROM fraud_safe_list ORDER BY prefix COLLATE \"C\"",
            &[],
        );
        all(list, &self.pool, rows::safe_entry).await
    }

    async fn log_decision(&self, decision: &LoggedDecision) -> Result<(), StoreError> {
        self.batched.decisions.write(decision.clone()).await?;
        // A block records a `verification.blocked` event.
        if decision.decision.action == Action::Block {
            self.events_may_be_recorded();
        }
        Ok(())
    }

    async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<LoggedDecision>, StoreError> {
        let page = query(
            r#"SELECT id, at, "to", api_key, client_ip, verification_id, action,
                      reasons::text AS reasons, user_id, trusted
               FROM fraud_decisions
               WHERE ($1::text IS NULL OR action = $1)
                 AND ($2::timestamptz IS NULL OR at >= $2)
                 AND ($3::timestamptz IS NULL OR at < $3)
                 AND ($4::timestamptz IS NULL OR (at, id) < ($4, $5::uuid))
               ORDER BY at DESC, id DESC
               LIMIT $6"#,
            &params::decision_filter(filter),
        );
        all(page, &self.pool, rows::logged_decision).await
    }

    async fn policy_modes(&self) -> Result<Vec<(Policy, Mode)>, StoreError> {
        let modes = query(
            "SELECT policy, mode FROM fraud_policy_modes ORDER BY policy",
            &[],
        );
        all(modes, &self.pool, rows::policy_mode).await
    }

    async fn set_policy_mode(
        &self,
        policy: Policy,
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let set = query(
            "INSERT INTO fraud_policy_modes (policy, mode, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (policy) DO UPDATE SET mode = excluded.mode, updated_at = excluded.updated_at",
            &params::policy_mode(policy, mode, now),
        );
        execute(set, &self.pool).await?;
        Ok(())
    }

    async fn reserve_spend(
        &self,
        day: NaiveDate,
        caps: &[SpendCap],
        amount: Amount,
        message: MessageId,
    ) -> Result<SpendReservation, StoreError> {
        let day = day.format("%Y-%m-%d").to_string();
        let amount = spend_units(amount)?;
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let mut after = Vec::with_capacity(caps.len());
        // The caps come in one order (total, API key, country) from every caller, so
        // concurrent reservations lock their rows in one order.
        for cap in caps {
            let scope = cap.scope.key();
            let reserved: Option<i64> = sqlx::query_scalar(
                "INSERT INTO budget_spend (day, scope, spent) \
                 SELECT $1::text, $2::text, $3::int8 WHERE $3::int8 <= $4::int8 \
                 ON CONFLICT (day, scope) DO UPDATE SET spent = budget_spend.spent + EXCLUDED.spent \
                 WHERE budget_spend.spent + EXCLUDED.spent <= $4::int8 \
                 RETURNING spent",
            )
            .bind(&day)
            .bind(&scope)
            .bind(amount)
            .bind(spend_units(cap.cap)?)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(store_error)?;
            let Some(reserved) = reserved else {
                let spent: Option<i64> = sqlx::query_scalar(
                    "SELECT spent FROM budget_spend WHERE day = $1 AND scope = $2",
                )
                .bind(&day)
                .bind(&scope)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(store_error)?;
                transaction.rollback().await.map_err(store_error)?;
                return Ok(SpendReservation::Exhausted {
                    scope: cap.scope.clone(),
                    spent: Amount::from_units(i128::from(spent.unwrap_or(0))),
                });
            };
            after.push(Amount::from_units(i128::from(reserved)));
            sqlx::query(
                "INSERT INTO budget_reservations (message_id, day, scope, amount) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (message_id, scope) DO UPDATE \
                 SET amount = budget_reservations.amount + EXCLUDED.amount",
            )
            .bind(message.as_uuid())
            .bind(&day)
            .bind(&scope)
            .bind(amount)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(SpendReservation::Reserved(after))
    }

    async fn release_spend(&self, message: MessageId) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        let released: Vec<ReservedSpend> = sqlx::query_as(
            "DELETE FROM budget_reservations WHERE message_id = $1 \
             RETURNING message_id::text, day, scope, amount",
        )
        .bind(message.as_uuid())
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        give_back(&mut transaction, &released).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(!released.is_empty())
    }

    async fn settle_spend(&self) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        // Rows another instance deletes meanwhile are skipped: each is settled once.
        let settled: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
            "DELETE FROM budget_reservations r USING messages m \
             WHERE r.message_id = m.id AND m.status NOT IN ('queued', 'sending') \
             RETURNING r.message_id::text, r.day, r.scope, r.amount, \
                 (m.status IN ('failed', 'expired') AND m.provider_sid IS NULL)",
        )
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        let unsent: Vec<ReservedSpend> = settled
            .into_iter()
            .filter(|(.., unsent)| *unsent)
            .map(|(message, day, scope, amount, _)| (message, day, scope, amount))
            .collect();
        give_back(&mut transaction, &unsent).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(messages_reserved_for(&unsent))
    }

    async fn charged_since(
        &self,
        country: &str,
        currency: &str,
        since: DateTime<Utc>,
    ) -> Result<(Amount, u64), StoreError> {
        charged(self, country, currency, since).await
    }
}

/// Takes what `reservations` reserved off their days' spend (never below nothing).
async fn give_back(
    connection: &mut PgConnection,
    reservations: &[ReservedSpend],
) -> Result<(), StoreError> {
    for (day, scope, amount) in spend_to_give_back(reservations) {
        sqlx::query(
            "UPDATE budget_spend SET spent = GREATEST(spent - $3, 0) \
             WHERE day = $1 AND scope = $2",
        )
        .bind(day)
        .bind(scope)
        .bind(amount)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    }
    Ok(())
}

/// Prices as the usage report sums them (`reports::costs`).
async fn charged(
    store: &PgStore,
    country: &str,
    currency: &str,
    since: DateTime<Utc>,
) -> Result<(Amount, u64), StoreError> {
    let (units, segments): (Option<String>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT round(sum(price_amount::numeric) * {units})::text, sum(segments)::int8 \
         FROM messages \
         WHERE country = $1 AND price_currency = $2 AND created_at >= $3 AND segments > 0 \
           AND {readable}",
        units = Amount::UNITS_PER_WHOLE,
        readable = crate::rows::readable_price("price_amount"),
    ))
    .bind(country)
    .bind(currency)
    .bind(since)
    .fetch_one(&store.pool)
    .await
    .map_err(store_error)?;
    let units: i128 = units
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| StoreError::Corrupt("a sum of prices is not a number".to_owned()))?;
    Ok((
        Amount::from_units(units),
        u64::try_from(segments.unwrap_or(0)).unwrap_or(0),
    ))
}

/// An amount as the store keeps it: units of 10^-8, in an `int8`. No budget or price comes
/// near its bound (ninety billion).
fn spend_units(amount: Amount) -> Result<i64, StoreError> {
    i64::try_from(amount.units())
        .map_err(|_| StoreError::Corrupt(format!("an amount out of a store's range: {amount}")))
}
