//! The fraud guard's signals and state on SQLite ([`ports::FraudStore`]). A code's counts are
//! one upsert of all its keys, read from a JSON array; every write goes through the writer
//! connection.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::budget::SpendCap;
use domain::fraud::{Block, CodeCounts, CodeEvent, Mode, Policy, Prefix, SignalKey};
use domain::pumping::hour_of;
use domain::{Amount, MessageId};
use ports::params::{self, Param};
use ports::{
    messages_reserved_for, rows, spend_to_give_back, DecisionFilter, FraudStore, LoggedDecision,
    ReservedSpend, SafeEntry, SpendReservation, StoreError,
};
use sqlx::SqliteConnection;

use crate::reports::PLAIN_PRICE;
use crate::rows::{all, execute, query, store_error};
use crate::SqliteStore;

/// Adds `entry` to the decision log on `connection` (the writer, or a write transaction of
/// the verification the finding let through).
pub(crate) async fn log_decision_on(
    connection: &mut SqliteConnection,
    entry: &LoggedDecision,
) -> Result<(), StoreError> {
    let reasons = params::reasons_json(&entry.decision.reasons);
    let log = query(
        r#"INSERT INTO fraud_decisions
               (id, at, "to", api_key, client_ip, verification_id, action, reasons,
                user_id, trusted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
        &params::logged_decision(entry, &reasons),
    );
    execute(log, &mut *connection).await?;
    Ok(())
}

/// The upsert that counts `event` for each `[scope, key]` of the JSON array `$1` in the hour
/// `$2`. The column is named by the event (a fixed name, never input). `WHERE true` tells
/// SQLite's parser that `ON CONFLICT` belongs to the insert, not to a join.
fn count_sql(event: CodeEvent) -> String {
    let column = event.as_str();
    format!(
        "INSERT INTO fraud_code_counts (scope, key, hour, {column}) \
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), $2, 1 \
         FROM json_each($1) WHERE true \
         ON CONFLICT (scope, key, hour) DO UPDATE SET {column} = {column} + 1"
    )
}

/// Keys as one JSON array of `[scope, key]` pairs.
fn json_keys(keys: &[SignalKey]) -> String {
    serde_json::Value::from(
        keys.iter()
            .map(|key| serde_json::json!([key.scope.as_str(), key.value]))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

#[async_trait]
impl FraudStore for SqliteStore {
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
        let sql = count_sql(event);
        let keys = json_keys(&keys);
        let count = query(&sql, &[Param::text(&keys), Param::time(hour_of(asked_at))]);
        execute(count, &self.writer).await?;
        Ok(())
    }

    async fn code_counts(
        &self,
        keys: &[SignalKey],
        since: DateTime<Utc>,
    ) -> Result<Vec<(SignalKey, CodeCounts)>, StoreError> {
        let keys = json_keys(keys);
        let counts = query(
            "SELECT scope, key, hour, sent, refused, checked, approved FROM fraud_code_counts \
             WHERE (scope, key) IN ( \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                 FROM json_each($1)) \
               AND hour >= $2 \
             ORDER BY scope, key, hour",
            &[Param::text(&keys), Param::time(since)],
        );
        all(counts, &self.pool, rows::code_counts).await
    }

    async fn forget_counts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let forget = query(
            "DELETE FROM fraud_code_counts WHERE hour < $1",
            &[Param::time(before)],
        );
        execute(forget, &self.writer).await
    }

    async fn place_block(&self, block: &Block) -> Result<bool, StoreError> {
        let reasons = params::reasons_json(&block.reasons);
        let place = query(
            "INSERT INTO fraud_blocks \
                 (prefix, reasons, codes, created_at, renewed_at, expires_at, manual) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (prefix) DO UPDATE SET \
                 reasons = excluded.reasons, codes = excluded.codes, \
                 created_at = excluded.created_at, renewed_at = excluded.renewed_at, \
                 expires_at = excluded.expires_at, manual = excluded.manual \
             WHERE excluded.manual \
                OR (fraud_blocks.expires_at IS NOT NULL \
                    AND fraud_blocks.expires_at <= excluded.created_at)",
            &params::block(block, &reasons),
        );
        Ok(execute(place, &self.writer).await? == 1)
    }

    async fn renew_block(&self, block: &Block) -> Result<bool, StoreError> {
        let renew = query(
            "UPDATE fraud_blocks SET codes = $2, renewed_at = $3, expires_at = $4 \
             WHERE prefix = $1 AND NOT manual \
               AND expires_at IS NOT NULL AND expires_at > $3",
            &params::renewal(block),
        );
        Ok(execute(renew, &self.writer).await? == 1)
    }

    async fn unblock(&self, prefix: &Prefix, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let lift = query(
            "UPDATE fraud_blocks SET expires_at = $2 \
             WHERE prefix = $1 AND (expires_at IS NULL OR expires_at > $2)",
            &params::prefix_at(prefix, now),
        );
        Ok(execute(lift, &self.writer).await? == 1)
    }

    async fn blocks(&self, now: DateTime<Utc>) -> Result<Vec<Block>, StoreError> {
        let blocks = query(
            "SELECT prefix, reasons, codes, created_at, renewed_at, expires_at FROM fraud_blocks \
             WHERE expires_at IS NULL OR expires_at > $1 \
             ORDER BY prefix",
            &[Param::time(now)],
        );
        all(blocks, &self.pool, rows::block).await
    }

    async fn add_safe(&self, entry: &SafeEntry) -> Result<(), StoreError> {
        let add = query(
            "INSERT INTO fraud_safe_list (prefix, note, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (prefix) DO UPDATE SET note = excluded.note, added_at = excluded.added_at",
            &params::safe_entry(entry),
        );
        execute(add, &self.writer).await?;
        Ok(())
    }

    async fn remove_safe(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        let remove = query(
            "DELETE FROM fraud_safe_list WHERE prefix = $1",
            &[Param::text(prefix.as_str())],
        );
        Ok(execute(remove, &self.writer).await? == 1)
    }

    async fn safe_list(&self) -> Result<Vec<SafeEntry>, StoreError> {
        let list = query(
            "SELECT prefix, note, added_at FROM fraud_safe_list ORDER BY prefix",
            &[],
        );
        all(list, &self.pool, rows::safe_entry).await
    }

    async fn log_decision(&self, decision: &LoggedDecision) -> Result<(), StoreError> {
        let mut connection = self.writer.acquire().await.map_err(store_error)?;
        log_decision_on(&mut connection, decision).await?;
        // A block records a `verification.blocked` event.
        if decision.decision.action == domain::fraud::Action::Block {
            self.events_may_be_recorded();
        }
        Ok(())
    }

    async fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<LoggedDecision>, StoreError> {
        let page = query(
            r#"SELECT id, at, "to", api_key, client_ip, verification_id, action, reasons,
                      user_id, trusted
               FROM fraud_decisions
               WHERE ($1 IS NULL OR action = $1)
                 AND ($2 IS NULL OR at >= $2)
                 AND ($3 IS NULL OR at < $3)
                 AND ($4 IS NULL OR (at, id) < ($4, $5))
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
        execute(set, &self.writer).await?;
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
        let message = message.as_uuid().hyphenated().to_string();
        let mut transaction = self.begin_write().await?;
        let mut after = Vec::with_capacity(caps.len());
        // The caps come in one order (total, API key, country) from every caller, so
        // concurrent reservations lock their rows in one order.
        for cap in caps {
            let scope = cap.scope.key();
            let reserved: Option<i64> = sqlx::query_scalar(
                "INSERT INTO budget_spend (day, scope, spent) \
                 SELECT $1, $2, $3 WHERE $3 <= $4 \
                 ON CONFLICT (day, scope) DO UPDATE SET spent = budget_spend.spent + EXCLUDED.spent \
                 WHERE budget_spend.spent + EXCLUDED.spent <= $4 \
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
            .bind(&message)
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
        let mut transaction = self.begin_write().await?;
        let released: Vec<ReservedSpend> = sqlx::query_as(
            "DELETE FROM budget_reservations WHERE message_id = $1 \
             RETURNING message_id, day, scope, amount",
        )
        .bind(message.as_uuid().hyphenated().to_string())
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        give_back(&mut transaction, &released).await?;
        transaction.commit().await.map_err(store_error)?;
        Ok(!released.is_empty())
    }

    async fn settle_spend(&self) -> Result<u64, StoreError> {
        let mut transaction = self.begin_write().await?;
        let settled: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
            "SELECT r.message_id, r.day, r.scope, r.amount, \
                 (m.status IN ('failed', 'expired') AND m.provider_sid IS NULL) \
             FROM budget_reservations r JOIN messages m ON m.id = r.message_id \
             WHERE m.status NOT IN ('queued', 'sending')",
        )
        .fetch_all(&mut *transaction)
        .await
        .map_err(store_error)?;
        for (message, _, scope, ..) in &settled {
            sqlx::query("DELETE FROM budget_reservations WHERE message_id = $1 AND scope = $2")
                .bind(message)
                .bind(scope)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        }
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
        // As the usage report sums prices: whole units of 10^-8, in two integers.
        let per_whole = Amount::UNITS_PER_WHOLE;
        let (whole, rest, segments): (Option<i64>, Option<i64>, Option<i64>) =
            sqlx::query_as(&format!(
                "SELECT sum(units / {per_whole}), sum(units % {per_whole}), sum(segments) FROM ( \
                     SELECT CAST(round(CAST(price_amount AS REAL) * {per_whole}) AS INTEGER) AS units, \
                            segments \
                     FROM messages \
                     WHERE country = $1 AND price_currency = $2 AND created_at >= $3 \
                       AND segments > 0 AND {PLAIN_PRICE})"
            ))
            .bind(country)
            .bind(currency)
            .bind(crate::rows::micros(since))
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok((
            Amount::from_units(
                i128::from(whole.unwrap_or(0)) * per_whole + i128::from(rest.unwrap_or(0)),
            ),
            u64::try_from(segments.unwrap_or(0)).unwrap_or(0),
        ))
    }
}

/// Takes what `reservations` reserved off their days' spend (never below nothing).
async fn give_back(
    connection: &mut SqliteConnection,
    reservations: &[ReservedSpend],
) -> Result<(), StoreError> {
    for (day, scope, amount) in spend_to_give_back(reservations) {
        sqlx::query(
            "UPDATE budget_spend SET spent = max(spent - $3, 0) WHERE day = $1 AND scope = $2",
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

/// An amount as the store keeps it: units of 10^-8, in an `int8`. No budget or price comes
/// near its bound (ninety billion).
fn spend_units(amount: Amount) -> Result<i64, StoreError> {
    i64::try_from(amount.units())
        .map_err(|_| StoreError::Corrupt(format!("an amount out of a store's range: {amount}")))
}
