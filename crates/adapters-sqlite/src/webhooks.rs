//! Client webhooks on SQLite ([`ports::WebhookStore`]): endpoints, the outbox of events
//! (written by the triggers of `0031_client_webhooks.sql` beside the changes they report) and
//! the queue of deliveries, claimed under a lease by the one writer.

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

use crate::rows::{all, execute, instant, json_uuids, micros, optional, query, store_error};
use crate::SqliteStore;

const ENDPOINT_COLUMNS: &str = "id, api_key, url, description, events, secret, previous_secret, \
     previous_secret_until, enabled, disabled_reason, failing_since, created_at, updated_at";

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let events = params::event_types(&endpoint.events);
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        execute(
            query(&sql, &params::webhook_endpoint(endpoint, &events)),
            &self.writer,
        )
        .await?;
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
        Ok(execute(update, &self.writer).await? == 1)
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let delete = query(
            "DELETE FROM webhook_endpoints WHERE id = $1",
            &[Param::id(id.as_uuid())],
        );
        Ok(execute(delete, &self.writer).await? == 1)
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
             )
             UPDATE webhook_deliveries
             SET attempt_count = attempt_count + 1, locked_until = $3, claim_token = $4
             WHERE id IN (SELECT id FROM due)
             RETURNING id, claim_token, attempt_count, event_id, endpoint_id",
            &[
                Param::time(now),
                Param::count(limit),
                Param::time(until),
                Param::id(token),
            ],
        );
        let claimed = all(claim, &self.writer, rows::claimed_delivery_row).await?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (id, claim, attempt, event_id, endpoint_id) in claimed {
            let event = query(
                "SELECT * FROM webhook_events WHERE id = $1",
                &[Param::id(event_id.as_uuid())],
            );
            let event = optional(event, &self.pool, rows::stored_event).await?;
            let endpoint = self.endpoint(endpoint_id).await?;
            // Both are deleted with the delivery (cascade): gone means deleted meanwhile.
            if let (Some(event), Some(endpoint)) = (event, endpoint) {
                deliveries.push(ClaimedDelivery {
                    id,
                    claim,
                    attempt,
                    event,
                    endpoint,
                });
            }
        }
        Ok(deliveries)
    }

    async fn keep_event_data(&self, id: EventId, data: &str) -> Result<String, StoreError> {
        let kept = sqlx::query(
            "UPDATE webhook_events SET data = COALESCE(data, $2) WHERE id = $1 RETURNING data",
        )
        .bind(id.as_uuid().hyphenated())
        .bind(data)
        .fetch_optional(&self.writer)
        .await
        .map_err(store_error)?;
        match kept {
            Some(row) => row.try_get("data").map_err(store_error),
            None => Ok(data.to_owned()),
        }
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
        let finish = query(
            "UPDATE webhook_deliveries
             SET status = $3, next_attempt_at = COALESCE($4, next_attempt_at),
                 locked_until = NULL, claim_token = NULL, last_http_status = $5,
                 last_error = $6, finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $7 END
             WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            &[
                Param::Integer(Some(id)),
                Param::id(Uuid::from_u128(claim.0)),
                Param::text(status),
                Param::Time(next),
                Param::Integer(answer.http_status.map(i64::from)),
                Param::Text(answer.error.as_deref()),
                Param::time(now),
            ],
        );
        Ok(execute(finish, &self.writer).await? == 1)
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
        .bind(id.as_uuid().hyphenated())
        .bind(succeeded)
        .bind(micros(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(store_error)?;
        let Some(row) = answered else {
            return Ok(None);
        };
        let since: Option<i64> = row.try_get("failing_since").map_err(store_error)?;
        since.map(|at| instant("failing_since", at)).transpose()
    }

    async fn disable_endpoint(
        &self,
        id: EndpointId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let disable = query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND enabled",
            &[
                Param::id(id.as_uuid()),
                Param::text(reason),
                Param::time(now),
            ],
        );
        Ok(execute(disable, &self.writer).await? == 1)
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
        let replayed = execute(replay, &self.writer).await?;
        if replayed > 0 {
            self.events_may_be_recorded();
        }
        Ok(replayed)
    }

    async fn record_event(&self, event: &NewEvent) -> Result<Option<EventId>, StoreError> {
        let id = EventId::from_uuid(Uuid::new_v4());
        let mut transaction = self.begin_write().await?;
        let pattern = format!("% {} %", event.kind.as_str());
        let recorded = query(
            "INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, \
                 status, detail)
             SELECT $1, $2, $3, $4,
                 COALESCE((SELECT max(sequence) FROM webhook_events WHERE object_id = $3), 0) + 1,
                 $5, $6, $7
             WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE api_key = $4 AND events LIKE $8)",
            &[
                Param::id(id.as_uuid()),
                Param::text(event.kind.as_str()),
                Param::id(event.object_id),
                Param::text(&event.api_key),
                Param::time(event.at),
                Param::Text(event.status.as_deref()),
                Param::Text(event.detail.as_deref()),
                Param::text(&pattern),
            ],
        );
        if execute(recorded, &mut *transaction).await? == 0 {
            return Ok(None);
        }
        let deliveries = query(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, \
                 created_at)
             SELECT $1, id, 'pending', $2, $2 FROM webhook_endpoints
             WHERE api_key = $3 AND enabled AND events LIKE $4",
            &[
                Param::id(id.as_uuid()),
                Param::time(event.at),
                Param::text(&event.api_key),
                Param::text(&pattern),
            ],
        );
        execute(deliveries, &mut *transaction).await?;
        transaction.commit().await.map_err(store_error)?;
        self.events_may_be_recorded();
        Ok(Some(id))
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
             ) AND status = 'pending'",
            &[Param::time(now), Param::count(limit), Param::text(EXPIRED)],
        );
        let expired = execute(expire, &self.writer).await?;
        if expired > 0 {
            self.events_may_be_recorded();
        }
        Ok(expired)
    }

    async fn logged_decision(&self, id: Uuid) -> Result<Option<LoggedDecision>, StoreError> {
        let found = query(
            "SELECT * FROM fraud_decisions WHERE id = $1",
            &[Param::id(id)],
        );
        optional(found, &self.pool, rows::logged_decision).await
    }

    async fn logged_decisions(&self, ids: &[Uuid]) -> Result<Vec<LoggedDecision>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            "SELECT * FROM fraud_decisions WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_uuids(ids.iter().copied()));
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
