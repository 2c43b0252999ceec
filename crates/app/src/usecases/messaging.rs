//! The send use case: validate, render, store as `queued`, wake the dispatcher.

use chrono::{DateTime, Utc};
use domain::{Channel, Message, MessageId, NewMessage, PhoneNumber, Priority};
use ports::{DeliveryUpdate, Enqueued, StoreError};
use sha2::{Digest, Sha256};
use template::RenderError;

use crate::usecases::fraud::{FraudRefusal, ScreenError};
use crate::usecases::Services;

/// Longest body accepted: ten concatenated segments. Beyond that a message is almost surely a
/// mistake, and carriers start dropping parts.
pub const MAX_BODY_CHARS: usize = 1_600;

#[derive(Debug, Clone)]
pub enum Content {
    Template {
        name: String,
        data: serde_json::Value,
    },
    Body(String),
}

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub to: PhoneNumber,
    pub channel: Channel,
    pub content: Content,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    CountryNotAllowed(#[from] domain::CountryNotAllowed),
    /// A call speaks a verification's code only (`POST /v1/verifications`).
    #[error("voice carries verification codes only; send messages by sms or whatsapp")]
    VoiceIsForCodes,
    #[error("the message is empty")]
    EmptyBody,
    #[error("the message is longer than {MAX_BODY_CHARS} characters")]
    BodyTooLong,
    #[error("the message contains a NUL character, which no SMS can carry")]
    NulCharacter,
    /// The idempotency key was taken by a request with other content; nothing was queued.
    #[error("Idempotency-Key `{0}` was already used with a different request")]
    IdempotencyKeyReused(String),
    /// A daily budget has no room for the message (the fraud guard's budget policy,
    /// enforced); nothing was queued.
    #[error(transparent)]
    BudgetExhausted(FraudRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Services {
    /// Renders and stores a message; it is durable when this returns.
    pub async fn send_message(
        &self,
        api_key: &str,
        request: SendRequest,
    ) -> Result<Enqueued, SendError> {
        if request.channel == Channel::Voice {
            return Err(SendError::VoiceIsForCodes);
        }
        self.guards.config.allowed_countries.admits(&request.to)?;
        let idempotency_key = request.idempotency_key.clone();
        let idempotency_fingerprint = idempotency_key
            .is_some()
            .then(|| fingerprint(&request.to, request.channel, &request.content));
        let (template, body) = self.message_text(request.content)?;
        let sensitive = template
            .as_deref()
            .is_some_and(|name| self.templates.is_sensitive(name));
        let now = self.clock.now();
        let message = new_message(request.to, request.channel, template, body, api_key, now);
        let message_id = message.id;
        let spent = self
            .fraud_guard
            .reserve_message(api_key, &message.to, message.segments, message_id, now)
            .await?;
        if let Some(finding) = spent {
            // A repeat of a message already accepted is answered as before, never refused.
            let earlier = match &idempotency_key {
                Some(key) => self.messages.by_idempotency_key(api_key, key).await?,
                None => None,
            };
            match earlier {
                Some(earlier) => {
                    return replayed(
                        Enqueued::Existing(earlier),
                        idempotency_key,
                        idempotency_fingerprint.as_deref(),
                    );
                }
                None => self
                    .fraud_guard
                    .judge_spent_budget(api_key, &message.to, finding, now)
                    .await
                    .map_err(|error| match error {
                        ScreenError::Refused(refusal) => SendError::BudgetExhausted(refusal),
                        ScreenError::Store(error) => SendError::Store(error),
                    })?,
            }
        }
        let enqueued = self
            .messages
            .enqueue(NewMessage {
                idempotency_key: request.idempotency_key,
                idempotency_fingerprint: idempotency_fingerprint.clone(),
                sensitive,
                ..message
            })
            .await;
        let enqueued = match enqueued {
            Ok(enqueued) => enqueued,
            Err(error) => {
                self.fraud_guard.release_after(message_id, &error).await;
                return Err(error.into());
            }
        };
        if let Enqueued::Existing(_) = &enqueued {
            // Not stored: the earlier message holds its own reservation.
            self.fraud_guard.release(message_id).await;
        }
        replayed(
            enqueued,
            idempotency_key,
            idempotency_fingerprint.as_deref(),
        )
        .inspect(|enqueued| {
            if let Enqueued::Created(_) = enqueued {
                self.dispatcher_wake.notify_one();
            }
        })
    }

    /// The template's name and the text a message would carry, refused as
    /// [`Services::send_message`] refuses it; nothing is stored. Lets a bulk send check every
    /// row before it sends any.
    pub fn message_text(&self, content: Content) -> Result<(Option<String>, String), SendError> {
        let (template, body) = match content {
            Content::Template { name, data } => {
                let body = self.templates.render(&name, &data)?;
                (Some(name), body)
            }
            Content::Body(body) => (None, body),
        };
        if body.trim().is_empty() {
            return Err(SendError::EmptyBody);
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(SendError::BodyTooLong);
        }
        // PostgreSQL text cannot hold it either: refused here, it is the client's mistake.
        if body.contains('\0') {
            return Err(SendError::NulCharacter);
        }
        Ok((template, body))
    }

    pub async fn message(
        &self,
        api_key: &str,
        id: MessageId,
    ) -> Result<Option<(Message, Vec<domain::Attempt>)>, StoreError> {
        let Some(message) = self.messages.get(id).await? else {
            return Ok(None);
        };
        // Another client's message does not exist as far as this one can tell.
        if message.api_key != api_key {
            return Ok(None);
        }
        let attempts = self.messages.attempts(id).await?;
        Ok(Some((message, attempts)))
    }

    /// The attempts to send a message, for one whose owner is already known (an idempotent
    /// repeat of a send).
    pub async fn message_attempts(
        &self,
        id: MessageId,
    ) -> Result<Vec<domain::Attempt>, StoreError> {
        self.messages.attempts(id).await
    }

    /// A message as it is stored now, whichever API key queued it: for the operator's CLI,
    /// which follows the messages it queued to their final status.
    pub async fn stored_message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.messages.get(id).await
    }

    /// Records what the provider says became of the message it knows as `provider_sid`;
    /// `idempotency_token`, the provider's id for the report, tells a report sent again.
    pub async fn record_delivery(
        &self,
        provider_sid: &str,
        event: domain::DeliveryEvent,
        idempotency_token: Option<String>,
    ) -> Result<DeliveryUpdate, StoreError> {
        let update = self
            .messages
            .record_delivery(provider_sid, event, idempotency_token)
            .await?;
        // The report is a trace of its own (the provider's request), linked to the send.
        if let DeliveryUpdate::Applied(message)
        | DeliveryUpdate::Ignored(message)
        | DeliveryUpdate::Duplicate(message) = &update
        {
            crate::observability::traces::link_to_send(self.messages.as_ref(), message).await;
        }
        Ok(update)
    }

    /// The messages `filter` selects, newest first, each with its attempts (`GET /v1/messages`,
    /// `sms-notify messages list`).
    pub async fn list_messages(
        &self,
        filter: &ports::MessageFilter,
    ) -> Result<Vec<(Message, Vec<domain::Attempt>)>, StoreError> {
        let messages = self.reports.list_messages(filter).await?;
        let ids: Vec<MessageId> = messages.iter().map(|message| message.id).collect();
        let mut attempts: std::collections::HashMap<MessageId, Vec<domain::Attempt>> =
            std::collections::HashMap::new();
        for (id, attempt) in self.reports.attempts_of(&ids).await? {
            attempts.entry(id).or_default().push(attempt);
        }
        Ok(messages
            .into_iter()
            .map(|message| {
                let own = attempts.remove(&message.id).unwrap_or_default();
                (message, own)
            })
            .collect())
    }
}

/// What a request answers once the store has said whether its idempotency key was taken:
/// the earlier message if the request is the same (by `fingerprint`; a message stored before
/// fingerprints were kept has none, and is taken as the same), else the key's reuse refused.
fn replayed(
    enqueued: Enqueued,
    idempotency_key: Option<String>,
    fingerprint: Option<&str>,
) -> Result<Enqueued, SendError> {
    match &enqueued {
        Enqueued::Existing(existing)
            if fingerprint.is_some()
                && existing.idempotency_fingerprint.is_some()
                && existing.idempotency_fingerprint.as_deref() != fingerprint =>
        {
            Err(SendError::IdempotencyKeyReused(
                idempotency_key.unwrap_or_default(),
            ))
        }
        _ => Ok(enqueued),
    }
}

/// What makes two requests under one idempotency key the same request: SHA-256, in hex, of
/// their parsed content (not their bytes, which may differ in spacing or key order, and not
/// the stored body, which a sensitive message loses), as canonical JSON.
fn fingerprint(to: &PhoneNumber, channel: Channel, content: &Content) -> String {
    let content = match content {
        Content::Template { name, data } => {
            serde_json::json!({ "template": name, "data": canonical(data) })
        }
        Content::Body(body) => serde_json::json!({ "body": body }),
    };
    let request = canonical(&serde_json::json!({
        "to": to.as_str(),
        "channel": channel.as_str(),
        "content": content,
    }));
    Sha256::digest(request.to_string().as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `value` with every object's keys in order, whatever order serde_json keeps them in.
fn canonical(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), canonical(value)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

/// A normal-priority message ready to enqueue, segments counted, not sensitive.
pub(crate) fn new_message(
    to: PhoneNumber,
    channel: Channel,
    template: Option<String>,
    body: String,
    api_key: &str,
    now: DateTime<Utc>,
) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        to,
        channel,
        template,
        segments: template::analyze(&body).segments,
        body,
        locale: None,
        content_sid: None,
        sensitive: false,
        priority: Priority::Normal,
        api_key: api_key.to_owned(),
        idempotency_key: None,
        idempotency_fingerprint: None,
        verification_id: None,
        send_before: None,
        request_id: crate::usecases::request_context::request_id(),
        traceparent: crate::observability::traces::current_traceparent(),
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usecases::request_context::RequestContext;

    fn queued() -> NewMessage {
        new_message(
            PhoneNumber::parse("+15551234567").unwrap(),
            Channel::Sms,
            None,
            "Hi".into(),
            "shop",
            Utc::now(),
        )
    }

    #[test]
    fn a_fingerprint_sees_values_not_how_the_json_was_written() {
        let to = PhoneNumber::parse("+15551234567").unwrap();
        let template = |data: serde_json::Value| Content::Template {
            name: "receipt".into(),
            data,
        };
        let nested = serde_json::json!({"order": {"id": 7, "total": "9.50"}, "name": "Ada"});
        let reordered: serde_json::Value =
            serde_json::from_str(r#"{"name":"Ada","order":{"total":"9.50","id":7}}"#).unwrap();
        let same = fingerprint(&to, Channel::Sms, &template(nested.clone()));
        assert_eq!(same, fingerprint(&to, Channel::Sms, &template(reordered)));
        assert_eq!(same.len(), 64, "SHA-256 in hex");
        let other_value = serde_json::json!({"order": {"id": 8, "total": "9.50"}, "name": "Ada"});
        for other in [
            fingerprint(&to, Channel::Sms, &template(other_value)),
            fingerprint(&to, Channel::Whatsapp, &template(nested.clone())),
            fingerprint(
                &PhoneNumber::parse("+15557654321").unwrap(),
                Channel::Sms,
                &template(nested),
            ),
            fingerprint(&to, Channel::Sms, &Content::Body("receipt".into())),
        ] {
            assert_ne!(same, other);
        }
    }

    #[tokio::test]
    async fn a_message_queued_during_a_request_keeps_its_request_id() {
        let during = RequestContext::new("req-7f3a".into())
            .scope(async { queued() })
            .await;
        assert_eq!(during.request_id.as_deref(), Some("req-7f3a"));
        assert_eq!(queued().request_id, None, "outside a request there is none");
    }
}
