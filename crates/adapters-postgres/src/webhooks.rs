//! Client webhooks on PostgreSQL ([`ports::WebhookStore`]): endpoints, the outbox of events
//! (written by the triggers of `0031_client_webhooks.sql` beside the changes they report) and
//! the queue of deliveries, claimed with `FOR UPDATE SKIP LOCKED` under a lease.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::webhook::{EndpointId, EventId};
use ports::params::{self, Param};
use ports::{
    rows, ClaimToken, ClaimedDelivery, DeliveryAnswer, DeliveryResult, FailingDelivery,
    LoggedDecision, NewEvent, StoreError, StoredEvent, WebhookEndpoint, WebhookStore,
};
use sqlx::Row as _;
use uuid::Uuid;

use store_batch::BatchWrite;

use crate::connections::Connections;
use crate::rows::{all, column, execute, optional, query, store_error, Pg};
use crate::PgStore;

const ENDPOINT_COLUMNS: &str = "id, api_key, url, description, events, secret, previous_secret, \
     previous_secret_until, enabled, disabled_reason, failing_since, created_at, updated_at";

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let events = params::event_types(&endpoint.events);
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        execute(
            query(&sql, &params::webhook_endpoint(endpoint, &events)),
            &self.pool,
        )
        .await?;
        if endpoint.enabled {
            self.endpoints_found(true);
        }
        Ok(())
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let found = query(
            "SELECT * FROM webhook_endpoints WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        optional(found, &self.pool, rows::webhook_endpoint).await
    }

    async fn endpoints(&self, api_key: Option<String>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let found = query(
            "SELECT * FROM webhook_endpoints WHERE ($1::text IS NULL OR api_key = $1) \
             ORDER BY created_at, id",
            &[Param::Text(api_key.as_deref())],
        );
        all(found, &self.pool, rows::webhook_endpoint).await
    }

    async fn update_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<bool, StoreError> {
        let events = params::event_types(&endpoint.events);
        let columns = params::webhook_endpoint(endpoint, &events);
        // All but `created_at`, which never changes.
        let update = query(
            "UPDATE webhook_endpoints SET url = $3, description = $4, events = $5, secret = $6, \
                 previous_secret = $7, previous_secret_until = $8, enabled = $9, \
                 disabled_reason = $10, failing_since = $11, updated_at = $12 \
             WHERE id = $1 AND api_key = $2",
            &[&columns[..11], &columns[12..]].concat(),
        );
        let updated = execute(update, &self.pool).await? == 1;
        if updated && endpoint.enabled {
            self.endpoints_found(true);
        }
        Ok(updated)
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let delete = query(
            "DELETE FROM webhook_endpoints WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        Ok(execute(delete, &self.pool).await? == 1)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let until = now + lease;
        let token = Uuid::new_v4();
        let claim = query(
            "WITH due AS (
                 SELECT d.id FROM webhook_deliveries AS d
                 JOIN webhook_endpoints AS e ON e.id = d.endpoint_id
                 WHERE d.status = 'pending' AND e.enabled AND d.next_attempt_at <= $1
                   AND (d.locked_until IS NULL OR d.locked_until <= $1)
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE webhook_deliveries AS d
             SET attempt_count = d.attempt_count + 1, locked_until = $3, claim_token = $4
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.claim_token, d.attempt_count, d.event_id, d.endpoint_id",
            &[
                Param::time(now),
                Param::count(limit),
                Param::time(until),
                Param::id(token),
            ],
        );
        let mut claimed = all(claim, &self.pool, rows::claimed_delivery_row).await?;
        if claimed.is_empty() {
            if self.ask_for_endpoints() {
                let found: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
                self.endpoints_found(found);
            }
            return Ok(Vec::new());
        }
        // In claim order, as the statement does not return its rows in any.
        claimed.sort_by_key(|(id, ..)| *id);
        // A batch's events and endpoints in one question each, not one per delivery.
        let event_ids: Vec<Uuid> = claimed.iter().map(|c| c.3.as_uuid()).collect();
        let events = sqlx::query("SELECT * FROM webhook_events WHERE id = ANY($1)")
            .bind(event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let events: HashMap<EventId, StoredEvent> = events
            .into_iter()
            .map(|row| rows::stored_event(&Pg(row)).map(|event| (event.id, event)))
            .collect::<Result<_, _>>()?;
        let endpoint_ids: Vec<Uuid> = claimed.iter().map(|c| c.4.as_uuid()).collect();
        let endpoints = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = ANY($1)")
            .bind(endpoint_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let endpoints: HashMap<EndpointId, WebhookEndpoint> = endpoints
            .into_iter()
            .map(|row| rows::webhook_endpoint(&Pg(row)).map(|endpoint| (endpoint.id, endpoint)))
            .collect::<Result<_, _>>()?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (id, claim, attempt, event_id, endpoint_id) in claimed {
            // Both are deleted with the delivery (cascade): gone means deleted meanwhile.
            if let (Some(event), Some(endpoint)) =
                (events.get(&event_id), endpoints.get(&endpoint_id))
            {
                deliveries.push(ClaimedDelivery {
                    id,
                    claim,
                    attempt,
                    event: event.clone(),
                    endpoint: endpoint.clone(),
                });
            }
        }
        Ok(deliveries)
    }

    async fn keep_event_data(&self, id: EventId, data: &str) -> Result<String, StoreError> {
        self.batched.event_data.write((id, data.to_owned())).await
    }

    async fn finish_delivery(
        &self,
        claim: ClaimToken,
        id: i64,
        result: DeliveryResult,
        answer: DeliveryAnswer,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (status, next) = delivery_status(&result);
        self.batched
            .delivery_finishes
            .write(FinishedDelivery {
                id,
                claim: Uuid::from_u128(claim.0),
                status,
                next,
                http_status: answer.http_status.map(i32::from),
                error: answer.error,
                now,
            })
            .await
    }

    async fn endpoint_answered(
        &self,
        id: EndpointId,
        succeeded: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let answered = sqlx::query(
            "UPDATE webhook_endpoints
             SET failing_since = CASE WHEN $2 THEN NULL ELSE COALESCE(failing_since, $3) END
             WHERE id = $1 RETURNING failing_since",
        )
        .bind(id.as_uuid())
        .bind(succeeded)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        match answered {
            Some(row) => row.try_get("failing_since").map_err(store_error),
            None => Ok(None),
        }
    }

    async fn disable_endpoint(
        &self,
        id: EndpointId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let disable = query(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND enabled",
            &[
                Param::id(id.as_uuid()),
                Param::text(reason),
                Param::time(now),
            ],
        );
        Ok(execute(disable, &self.pool).await? == 1)
    }

    async fn replay(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let replay = query(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, \
                 created_at)
             SELECT ev.id, e.id, 'pending', $3, $3
             FROM webhook_endpoints AS e
             JOIN webhook_events AS ev ON ev.api_key = e.api_key
             WHERE e.id = $1 AND ev.created_at >= $2 AND e.events LIKE '% ' || ev.type || ' %'",
            &[
                Param::id(endpoint.as_uuid()),
                Param::time(since),
                Param::time(now),
            ],
        );
        let replayed = execute(replay, &self.pool).await?;
        if replayed > 0 {
            self.events_recorded();
        }
        Ok(replayed)
    }

    async fn record_event(&self, event: &NewEvent) -> Result<Option<EventId>, StoreError> {
        let recorded = sqlx::query(
            "SELECT webhook_record_event($1, $2, $3, $4, $5, NULL, NULL, NULL, NULL, $6) AS id",
        )
        .bind(event.kind.as_str())
        .bind(event.object_id)
        .bind(&event.api_key)
        .bind(event.at)
        .bind(event.status.as_deref())
        .bind(event.detail.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let id: Option<Uuid> = recorded.try_get("id").map_err(store_error)?;
        if id.is_some() {
            self.events_recorded();
        }
        Ok(id.map(EventId::from_uuid))
    }

    async fn expire_verifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let expire = query(
            "UPDATE verifications SET status = 'expired', updated_at = $1
             WHERE id IN (
                 SELECT id FROM verifications
                 WHERE status = 'pending' AND expires_at <= $1
                   AND api_key IN (SELECT api_key FROM webhook_endpoints WHERE events LIKE $3)
                 ORDER BY expires_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ) AND status = 'pending'",
            &[Param::time(now), Param::count(limit), Param::text(EXPIRED)],
        );
        let expired = execute(expire, &self.pool).await?;
        if expired > 0 {
            self.events_may_be_recorded();
        }
        Ok(expired)
    }

    async fn logged_decision(&self, id: Uuid) -> Result<Option<LoggedDecision>, StoreError> {
        let found = query(
            r#"SELECT id, at, "to", api_key, client_ip, user_id, trusted, verification_id, action,
                    reasons::text AS reasons
             FROM fraud_decisions WHERE id = $1"#,
            &[Param::id(id)],
        );
        optional(found, &self.pool, rows::logged_decision).await
    }

    async fn logged_decisions(&self, ids: &[Uuid]) -> Result<Vec<LoggedDecision>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            r#"SELECT id, at, "to", api_key, client_ip, user_id, trusted, verification_id, action,
                    reasons::text AS reasons
             FROM fraud_decisions WHERE id = ANY($1)"#,
        )
        .bind(ids.to_vec());
        all(found, &self.pool, rows::logged_decision).await
    }

    async fn events_of(&self, object_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let found = query(
            "SELECT * FROM webhook_events WHERE object_id = $1 ORDER BY sequence",
            &[Param::id(object_id)],
        );
        all(found, &self.pool, rows::stored_event).await
    }

    async fn failing_deliveries(
        &self,
        endpoint: EndpointId,
        limit: u32,
    ) -> Result<Vec<FailingDelivery>, StoreError> {
        // A pending delivery with an answer or an error was tried and failed; one given up
        // (`failed`) has no next try.
        let found = query(
            "SELECT d.id, d.event_id, e.type, e.object_id, d.attempt_count, d.last_http_status, \
                    d.last_error, d.created_at, \
                    CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at \
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.endpoint_id = $1 AND (d.status = 'failed' OR (d.status = 'pending' \
                 AND (d.last_error IS NOT NULL OR d.last_http_status IS NOT NULL))) \
             ORDER BY d.id DESC LIMIT $2",
            &[Param::id(endpoint.as_uuid()), Param::count(limit)],
        );
        all(found, &self.pool, rows::failing_delivery).await
    }
}

/// `LIKE` pattern of the endpoints receiving `verification.expired`.
const EXPIRED: &str = "% verification.expired %";

/// The delivery's status after an attempt, and when it is next due.
fn delivery_status(result: &DeliveryResult) -> (&'static str, Option<DateTime<Utc>>) {
    match result {
        DeliveryResult::Delivered => ("delivered", None),
        DeliveryResult::Retry { at } => ("pending", Some(*at)),
        DeliveryResult::Failed => ("failed", None),
    }
}

/// `WebhookStore::keep_event_data`, in batches: each delivery of a new event keeps its data
/// once, and a deliverer sends many at once. Each caller gets the data kept for its event
/// (the first kept, when two deliveries of one event render it together).
pub(crate) struct EventData;

impl BatchWrite for EventData {
    type Pool = Connections;
    type Item = (EventId, String);
    type Output = String;

    async fn write(
        &self,
        connections: &Connections,
        items: &[(EventId, String)],
    ) -> Result<Vec<String>, StoreError> {
        let mut connection = connections.acquire().await?;
        let kept = sqlx::query(
            "UPDATE webhook_events AS e SET data = COALESCE(e.data, k.data)
             FROM unnest($1::uuid[], $2::text[]) AS k (id, data)
             WHERE e.id = k.id
             RETURNING e.id, e.data",
        )
        .bind(column(items, |(id, _)| id.as_uuid()))
        .bind(column(items, |(_, data)| data.as_str()))
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        let mut kept_by_id = HashMap::with_capacity(kept.len());
        for row in kept {
            let id: Uuid = row.try_get("id").map_err(store_error)?;
            let data: String = row.try_get("data").map_err(store_error)?;
            kept_by_id.insert(id, data);
        }
        // An event deleted meanwhile keeps nothing: its data is sent as rendered.
        Ok(items
            .iter()
            .map(|(id, data)| {
                kept_by_id
                    .get(&id.as_uuid())
                    .cloned()
                    .unwrap_or_else(|| data.clone())
            })
            .collect())
    }
}

/// How one claimed delivery's attempt ended, as `finish_delivery` records it.
pub(crate) struct FinishedDelivery {
    id: i64,
    claim: Uuid,
    status: &'static str,
    next: Option<DateTime<Utc>>,
    http_status: Option<i32>,
    error: Option<String>,
    now: DateTime<Utc>,
}

/// `WebhookStore::finish_delivery`, in batches: a deliverer sending hundreds of events a
/// second would otherwise commit once for each. Each is recorded only while its claim holds.
pub(crate) struct DeliveryFinishes;

impl BatchWrite for DeliveryFinishes {
    type Pool = Connections;
    type Item = FinishedDelivery;
    type Output = bool;

    async fn write(
        &self,
        connections: &Connections,
        finishes: &[FinishedDelivery],
    ) -> Result<Vec<bool>, StoreError> {
        let mut connection = connections.acquire().await?;
        let finished: Vec<i64> = sqlx::query_scalar(
            "UPDATE webhook_deliveries AS d
             SET status = f.status, next_attempt_at = COALESCE(f.next, d.next_attempt_at),
                 locked_until = NULL, claim_token = NULL, last_http_status = f.http_status,
                 last_error = f.error,
                 finished_at = CASE WHEN f.status = 'pending' THEN NULL ELSE f.now END
             FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[],
                         $6::text[], $7::timestamptz[])
                 AS f (id, claim, status, next, http_status, error, now)
             WHERE d.id = f.id AND d.claim_token = f.claim AND d.status = 'pending'
             RETURNING d.id",
        )
        .bind(column(finishes, |f| f.id))
        .bind(column(finishes, |f| f.claim))
        .bind(column(finishes, |f| f.status))
        .bind(column(finishes, |f| f.next))
        .bind(column(finishes, |f| f.http_status))
        .bind(column(finishes, |f| f.error.as_deref()))
        .bind(column(finishes, |f| f.now))
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        connection.park();
        let finished: HashSet<i64> = finished.into_iter().collect();
        Ok(finishes.iter().map(|f| finished.contains(&f.id)).collect())
    }
}
