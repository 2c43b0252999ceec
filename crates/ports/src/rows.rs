//! Rows as the stores read them, turned into domain values once for every store.
//!
//! A store says how it reads a value of each kind ([`StoredRow`]: its own time and id formats,
//! its column types); what each column means, and which stored values are corrupt, is decided
//! here. A row that does not convert is [`StoreError::Corrupt`]: the database holds something
//! the domain never wrote.

use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::fraud::{Block, CodeCounts, Decision, Mode, Policy, Prefix, Reason, SignalKey};
use domain::{
    Attempt, Channel, CodeLength, DeliveryEvent, FallbackReason, Message, MessageId, MessageStatus,
    PhoneNumber, Price, Priority, Transaction, Verification, VerificationAttempt, VerificationId,
    Workflow,
};
use uuid::Uuid;

use domain::webhook::{EndpointId, EventId, EventType};

use crate::{
    ClaimToken, ClaimedMessage, ConversionCount, DueStep, ErrorCodeCount, FailingDelivery, Latency,
    LatencyCount, LoggedDecision, QueueStats, SafeEntry, StatusCount, StoreError, StoredEvent,
    UsageGroup, VerifyService, WebhookEndpoint,
};

/// One row as a store's driver returns it, read a column at a time by name. `None` is NULL;
/// a value the store cannot read as the kind asked for is an error.
pub trait StoredRow {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// Any integer column, whatever its width in the database.
    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<Option<bool>, StoreError>;
    fn id(&self, column: &str) -> Result<Option<Uuid>, StoreError>;
    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// The columns of one table's row, naming the table in what a corrupt value reports.
struct Columns<'r, R> {
    row: &'r R,
    table: &'static str,
}

impl<'r, R: StoredRow> Columns<'r, R> {
    fn of(row: &'r R, table: &'static str) -> Self {
        Self { row, table }
    }

    fn corrupt(&self, column: &str, problem: impl Display) -> StoreError {
        StoreError::Corrupt(format!("{}.{column}: {problem}", self.table))
    }

    fn required<T>(&self, column: &str, value: Option<T>) -> Result<T, StoreError> {
        value.ok_or_else(|| self.corrupt(column, "is null"))
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.row.text(column)
    }

    fn text(&self, column: &str) -> Result<String, StoreError> {
        let value = self.row.text(column)?;
        self.required(column, value)
    }

    fn parsed<T: FromStr>(&self, column: &str) -> Result<T, StoreError>
    where
        T::Err: Display,
    {
        self.text(column)?
            .parse()
            .map_err(|error| self.corrupt(column, error))
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        let value = self.row.integer(column)?;
        self.required(column, value)
    }

    fn count(&self, column: &str) -> Result<u32, StoreError> {
        let value = self.integer(column)?;
        u32::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is not a count")))
    }

    /// A count the database aggregated: never negative, so a negative one counts nothing.
    fn total(&self, column: &str) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.integer(column)?).unwrap_or(0))
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        let value = self.row.flag(column)?;
        self.required(column, value)
    }

    fn id(&self, column: &str) -> Result<Uuid, StoreError> {
        let value = self.row.id(column)?;
        self.required(column, value)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        let value = self.row.time(column)?;
        self.required(column, value)
    }

    fn prefix(&self, column: &str) -> Result<Prefix, StoreError> {
        self.parsed(column)
    }

    /// Reasons kept as a JSON array of `{code, detail}`.
    fn reasons(&self, column: &str) -> Result<Vec<Reason>, StoreError> {
        serde_json::from_str(&self.text(column)?).map_err(|error| self.corrupt(column, error))
    }

    fn phone_number(&self, column: &str) -> Result<PhoneNumber, StoreError> {
        PhoneNumber::from_stored(&self.text(column)?).map_err(|error| self.corrupt(column, error))
    }

    /// A price is stored as two columns that are both set or both null.
    fn price(&self, amount: &str, currency: &str) -> Result<Option<Price>, StoreError> {
        Ok(
            match (self.optional_text(amount)?, self.optional_text(currency)?) {
                (Some(amount), Some(currency)) => Some(Price { amount, currency }),
                _ => None,
            },
        )
    }
}

/// A row of `messages`.
pub fn message(row: &impl StoredRow) -> Result<Message, StoreError> {
    let m = Columns::of(row, "messages");
    let rank = m.integer("priority")?;
    let rank =
        i16::try_from(rank).map_err(|_| m.corrupt("priority", format!("{rank} is no rank")))?;
    Ok(Message {
        id: MessageId::from_uuid(m.id("id")?),
        to: m.phone_number("to")?,
        channel: m.parsed("channel")?,
        template: m.optional_text("template")?,
        body: m.text("body")?,
        locale: m.optional_text("locale")?,
        content_sid: m.optional_text("content_sid")?,
        sensitive: m.flag("sensitive")?,
        segments: m.count("segments")?,
        priority: Priority::from_rank(rank),
        status: m.parsed("status")?,
        api_key: m.text("api_key")?,
        idempotency_key: m.optional_text("idempotency_key")?,
        idempotency_fingerprint: m.optional_text("idempotency_fingerprint")?,
        verification_id: m.row.id("verification_id")?.map(VerificationId::from_uuid),
        send_before: m.row.time("send_before")?,
        provider: m.optional_text("provider")?,
        provider_sid: m.optional_text("provider_sid")?,
        error_code: m.optional_text("error_code")?,
        error_message: m.optional_text("error_message")?,
        price: m.price("price_amount", "price_currency")?,
        attempt_count: m.count("attempt_count")?,
        request_id: m.optional_text("request_id")?,
        traceparent: m.optional_text("traceparent")?,
        next_attempt_at: m.time("next_attempt_at")?,
        created_at: m.time("created_at")?,
        updated_at: m.time("updated_at")?,
    })
}

/// A row of `messages` that a claim just returned, with its claim token.
pub fn claimed_message(row: &impl StoredRow) -> Result<ClaimedMessage, StoreError> {
    let token = row.id("claim_token")?.ok_or_else(|| {
        StoreError::Corrupt("messages.claim_token: a claimed message has no token".into())
    })?;
    let message = message(row)?;
    Ok(ClaimedMessage {
        // A claim stamps `updated_at` with its time; a sender rate may set a later one.
        send_at: message.updated_at,
        message,
        claim: ClaimToken(token.as_u128()),
    })
}

/// A row of `message_attempts`.
pub fn attempt(row: &impl StoredRow) -> Result<Attempt, StoreError> {
    let a = Columns::of(row, "message_attempts");
    Ok(Attempt {
        number: a.count("number")?,
        provider: a.optional_text("provider")?,
        started_at: a.time("started_at")?,
        finished_at: a.time("finished_at")?,
        outcome: a.parsed("outcome")?,
        http_status: a
            .row
            .integer("http_status")?
            .map(|status| {
                u16::try_from(status).map_err(|_| {
                    a.corrupt("http_status", format!("{status} is not an HTTP status"))
                })
            })
            .transpose()?,
        error_code: a.optional_text("error_code")?,
        error_message: a.optional_text("error_message")?,
        traceparent: a.optional_text("traceparent")?,
    })
}

/// A row of `message_attempts` with the message it belongs to.
pub fn message_attempt(row: &impl StoredRow) -> Result<(MessageId, Attempt), StoreError> {
    let message_id = Columns::of(row, "message_attempts").id("message_id")?;
    Ok((MessageId::from_uuid(message_id), attempt(row)?))
}

/// Each message with its own attempts, from the rows of `messages` and of `message_attempts`
/// (in their order) read for the same ids.
pub fn with_attempts(
    messages: Vec<Message>,
    attempts: Vec<(MessageId, Attempt)>,
) -> Vec<(Message, Vec<Attempt>)> {
    let mut by_message: std::collections::HashMap<MessageId, Vec<Attempt>> =
        std::collections::HashMap::with_capacity(messages.len());
    for (id, attempt) in attempts {
        by_message.entry(id).or_default().push(attempt);
    }
    messages
        .into_iter()
        .map(|message| {
            let own = by_message.remove(&message.id).unwrap_or_default();
            (message, own)
        })
        .collect()
}

/// A row of `verifications`.
pub fn verification(row: &impl StoredRow) -> Result<Verification, StoreError> {
    let v = Columns::of(row, "verifications");
    Ok(Verification {
        id: VerificationId::from_uuid(v.id("id")?),
        to: v.phone_number("to")?,
        channel: v.parsed("channel")?,
        api_key: v.text("api_key")?,
        status: v.parsed("status")?,
        check_count: v.count("check_count")?,
        max_checks: v.count("max_checks")?,
        send_count: v.count("send_count")?,
        max_sends: v.count("max_sends")?,
        expires_at: v.time("expires_at")?,
        last_sent_at: v.time("last_sent_at")?,
        created_at: v.time("created_at")?,
        risk: v
            .optional_text("risk")?
            .map(|risk| serde_json::from_str(&risk).map_err(|error| v.corrupt("risk", error)))
            .transpose()?,
        transaction: Transaction::parse(
            v.optional_text("amount")?.as_deref(),
            v.optional_text("currency")?.as_deref(),
            v.optional_text("payee")?.as_deref(),
        )
        .map_err(|error| v.corrupt(error.field(), error))?,
    })
}

/// A row of `message_events`.
pub fn delivery_event(row: &impl StoredRow) -> Result<DeliveryEvent, StoreError> {
    let e = Columns::of(row, "message_events");
    Ok(DeliveryEvent {
        status: e.parsed("status")?,
        error_code: e.optional_text("error_code")?,
        error_message: e.optional_text("error_message")?,
        price: e.price("price_amount", "price_currency")?,
        received_at: e.time("received_at")?,
    })
}

/// A group of the usage report: `key`, `messages`, `segments`, `delivered`, `failed`.
pub fn usage_group(row: &impl StoredRow) -> Result<UsageGroup, StoreError> {
    let g = Columns::of(row, "messages");
    Ok(UsageGroup {
        key: g.optional_text("key")?,
        messages: g.total("messages")?,
        segments: g.total("segments")?,
        delivered: g.total("delivered")?,
        failed: g.total("failed")?,
    })
}

/// A conversion report's group: `key`, `started`, `codes_sent`, `approved`.
pub fn conversion_count(row: &impl StoredRow) -> Result<ConversionCount, StoreError> {
    let g = Columns::of(row, "verifications");
    Ok(ConversionCount {
        key: g.optional_text("key")?,
        started: g.total("started")?,
        codes_sent: g.total("codes_sent")?,
        approved: g.total("approved")?,
    })
}

/// A bucket of a group's latencies: `key`, `latency` (`approval`, `delivery`), `bucket`,
/// `count`.
pub fn latency_count(row: &impl StoredRow) -> Result<LatencyCount, StoreError> {
    let l = Columns::of(row, "verifications");
    let name = l.text("latency")?;
    let latency = Latency::parse(&name).ok_or_else(|| l.corrupt("latency", &name))?;
    let bucket = l.integer("bucket")?;
    Ok(LatencyCount {
        key: l.optional_text("key")?,
        latency,
        bucket: usize::try_from(bucket).map_err(|_| l.corrupt("bucket", bucket))?,
        count: l.total("count")?,
    })
}

/// An error code of a group: `key`, `code`, `count`.
pub fn error_code_count(row: &impl StoredRow) -> Result<ErrorCodeCount, StoreError> {
    let c = Columns::of(row, "messages");
    Ok(ErrorCodeCount {
        key: c.optional_text("key")?,
        code: c.text("code")?,
        count: c.total("count")?,
    })
}

/// The messages of a status and channel: `status`, `channel`, `count`.
pub fn status_count(row: &impl StoredRow) -> Result<StatusCount, StoreError> {
    let c = Columns::of(row, "messages");
    Ok(StatusCount {
        status: c.parsed("status")?,
        channel: c.parsed("channel")?,
        count: c.total("count")?,
    })
}

/// The queue: `depth`, `oldest_queued_at`.
pub fn queue_stats(row: &impl StoredRow) -> Result<QueueStats, StoreError> {
    let q = Columns::of(row, "messages");
    Ok(QueueStats {
        depth: q.total("depth")?,
        oldest_queued_at: q.row.time("oldest_queued_at")?,
    })
}

/// A row of `fraud_code_counts`: `scope`, `key`, `hour`, `sent`, `refused`, `checked`,
/// `approved`.
pub fn code_counts(row: &impl StoredRow) -> Result<(SignalKey, CodeCounts), StoreError> {
    let c = Columns::of(row, "fraud_code_counts");
    let key = SignalKey {
        scope: c.parsed("scope")?,
        value: c.text("key")?,
    };
    Ok((
        key,
        CodeCounts {
            hour: c.time("hour")?,
            sent: c.total("sent")?,
            refused: c.total("refused")?,
            checked: c.total("checked")?,
            approved: c.total("approved")?,
        },
    ))
}

/// A row of `fraud_blocks`.
pub fn block(row: &impl StoredRow) -> Result<Block, StoreError> {
    let b = Columns::of(row, "fraud_blocks");
    Ok(Block {
        prefix: b.prefix("prefix")?,
        reasons: b.reasons("reasons")?,
        codes: b.total("codes")?,
        created_at: b.time("created_at")?,
        renewed_at: b.time("renewed_at")?,
        expires_at: b.row.time("expires_at")?,
    })
}

/// A row of `fraud_safe_list`.
pub fn safe_entry(row: &impl StoredRow) -> Result<SafeEntry, StoreError> {
    let e = Columns::of(row, "fraud_safe_list");
    Ok(SafeEntry {
        prefix: e.prefix("prefix")?,
        note: e.optional_text("note")?,
        added_at: e.time("added_at")?,
    })
}

/// A row of `fraud_policy_modes`.
pub fn policy_mode(row: &impl StoredRow) -> Result<(Policy, Mode), StoreError> {
    let p = Columns::of(row, "fraud_policy_modes");
    Ok((p.parsed("policy")?, p.parsed("mode")?))
}

/// A row of `fraud_decisions`.
pub fn logged_decision(row: &impl StoredRow) -> Result<LoggedDecision, StoreError> {
    let d = Columns::of(row, "fraud_decisions");
    Ok(LoggedDecision {
        id: d.id("id")?,
        at: d.time("at")?,
        to: d.phone_number("to")?,
        api_key: d.text("api_key")?,
        client_ip: d.optional_text("client_ip")?,
        user_id: d.optional_text("user_id")?,
        trusted: d.flag("trusted")?,
        verification_id: d.row.id("verification_id")?.map(VerificationId::from_uuid),
        decision: Decision {
            action: d.parsed("action")?,
            reasons: d.reasons("reasons")?,
        },
    })
}

/// A row of `verify_services`.
pub fn verify_service(row: &impl StoredRow) -> Result<VerifyService, StoreError> {
    let s = Columns::of(row, "verify_services");
    let digits = s.integer("code_length")?;
    Ok(VerifyService {
        id: s.id("id")?,
        account_sid: s.text("account_sid")?,
        friendly_name: s.text("friendly_name")?,
        code_length: CodeLength::new(digits).map_err(|error| s.corrupt("code_length", error))?,
        created_at: s.time("created_at")?,
        updated_at: s.time("updated_at")?,
    })
}

/// A row of `webhook_endpoints`; `events` is the space-separated list
/// ([`crate::params::event_types`]).
pub fn webhook_endpoint(row: &impl StoredRow) -> Result<WebhookEndpoint, StoreError> {
    let e = Columns::of(row, "webhook_endpoints");
    let events = e
        .text("events")?
        .split_whitespace()
        .map(|kind| kind.parse().map_err(|error| e.corrupt("events", error)))
        .collect::<Result<Vec<EventType>, _>>()?;
    Ok(WebhookEndpoint {
        id: EndpointId::from_uuid(e.id("id")?),
        api_key: e.text("api_key")?,
        url: e.text("url")?,
        description: e.optional_text("description")?,
        events,
        secret: e.text("secret")?,
        previous_secret: e.optional_text("previous_secret")?,
        previous_secret_until: e.row.time("previous_secret_until")?,
        enabled: e.flag("enabled")?,
        disabled_reason: e.optional_text("disabled_reason")?,
        failing_since: e.row.time("failing_since")?,
        created_at: e.time("created_at")?,
        updated_at: e.time("updated_at")?,
    })
}

/// A row of `webhook_events`.
pub fn stored_event(row: &impl StoredRow) -> Result<StoredEvent, StoreError> {
    let e = Columns::of(row, "webhook_events");
    let sequence = e.integer("sequence")?;
    Ok(StoredEvent {
        id: EventId::from_uuid(e.id("id")?),
        kind: e.parsed("type")?,
        object_id: e.id("object_id")?,
        api_key: e.text("api_key")?,
        sequence: u64::try_from(sequence)
            .map_err(|_| e.corrupt("sequence", format!("{sequence} is no sequence number")))?,
        created_at: e.time("created_at")?,
        status: e.optional_text("status")?,
        error_code: e.optional_text("error_code")?,
        error_message: e.optional_text("error_message")?,
        price: e.price("price_amount", "price_currency")?,
        detail: e.optional_text("detail")?,
        data: e.optional_text("data")?,
    })
}

/// A delivery whose last attempt failed, with its event's type and object
/// ([`crate::WebhookStore::failing_deliveries`]).
pub fn failing_delivery(row: &impl StoredRow) -> Result<FailingDelivery, StoreError> {
    let d = Columns::of(row, "webhook_deliveries");
    let status = match row.integer("last_http_status")? {
        None => None,
        Some(status) => Some(
            u16::try_from(status)
                .map_err(|_| d.corrupt("last_http_status", format!("{status} is no status")))?,
        ),
    };
    Ok(FailingDelivery {
        id: d.integer("id")?,
        event: EventId::from_uuid(d.id("event_id")?),
        kind: d.parsed("type")?,
        object_id: d.id("object_id")?,
        attempts: d.count("attempt_count")?,
        last_http_status: status,
        last_error: d.optional_text("last_error")?,
        next_attempt_at: row.time("next_attempt_at")?,
        created_at: d.time("created_at")?,
    })
}

/// A row of `webhook_deliveries` a claim returned: its id, claim token, attempt count, event
/// id and endpoint id.
pub fn claimed_delivery_row(
    row: &impl StoredRow,
) -> Result<(i64, ClaimToken, u32, EventId, EndpointId), StoreError> {
    let d = Columns::of(row, "webhook_deliveries");
    Ok((
        d.integer("id")?,
        ClaimToken(d.id("claim_token")?.as_u128()),
        d.count("attempt_count")?,
        EventId::from_uuid(d.id("event_id")?),
        EndpointId::from_uuid(d.id("endpoint_id")?),
    ))
}

/// A row of `verification_workflows`.
pub fn workflow(row: &impl StoredRow) -> Result<Workflow, StoreError> {
    let w = Columns::of(row, "verification_workflows");
    let channels = w
        .text("channels")?
        .split(',')
        .map(|channel| channel.parse::<Channel>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| w.corrupt("channels", error))?;
    let verification_id = VerificationId::from_uuid(w.id("verification_id")?);
    let workflow = Workflow::from_stored(
        verification_id,
        channels,
        w.integer("fallback_after_seconds")?,
        w.count("step")?,
    )
    .ok_or_else(|| w.corrupt("channels", "not a workflow"))?;
    Ok(Workflow {
        step_message_id: w.row.id("step_message_id")?.map(MessageId::from_uuid),
        next_step_at: w.row.time("next_step_at")?,
        stopped_reason: w.optional_text("stopped_reason")?,
        request: serde_json::from_str(&w.text("request")?)
            .map_err(|error| w.corrupt("request", error))?,
        ..workflow
    })
}

/// A claimed workflow joined with its verification (`verifications.*`) and the status of its
/// step's message (`step_message_status`): why its next step is due (the message's failure
/// before the delay, which a receipt may have brought after it).
pub fn due_step(row: &impl StoredRow) -> Result<DueStep, StoreError> {
    let workflow = workflow(row)?;
    let verification = verification(row)?;
    let step_status: Option<MessageStatus> = row
        .text("step_message_status")?
        .map(|status| status.parse())
        .transpose()
        .map_err(|error| StoreError::Corrupt(format!("messages.status: {error}")))?;
    let reason = step_status
        .and_then(FallbackReason::of_status)
        .unwrap_or(FallbackReason::Timeout);
    Ok(DueStep {
        workflow,
        verification,
        reason,
    })
}

/// A verification's code message (`messages.*`) with `sent_at`, `delivered_at` and
/// `approved_at` beside it.
pub fn verification_attempt(row: &impl StoredRow) -> Result<VerificationAttempt, StoreError> {
    let a = Columns::of(row, "messages");
    Ok(VerificationAttempt {
        message_id: MessageId::from_uuid(a.id("id")?),
        channel: a.parsed("channel")?,
        provider: a.optional_text("provider")?,
        status: a.parsed("status")?,
        created_at: a.time("created_at")?,
        sent_at: a.row.time("sent_at")?,
        delivered_at: a.row.time("delivered_at")?,
        approved: a.row.time("approved_at")?.is_some(),
    })
}
