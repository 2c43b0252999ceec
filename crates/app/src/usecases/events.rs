//! Events to client services (signed webhooks): the endpoints a client registers, their
//! signing secrets and rotation, replays, the one event application code emits itself (a
//! channel fallback), and the SSRF guard every endpoint URL passes at registration and again
//! at each delivery. Not Twilio's status callbacks, which `http::webhooks` receives.
//!
//! The other events are written by the stores beside the changes they report (an outbox);
//! `dispatch::client_webhooks` delivers them.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use domain::webhook::{is_public_address, EndpointId, EventId, EventType};
use domain::{Channel, Verification};
use ports::{NewEvent, StoreError, WebhookEndpoint};
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use url::Url;

use super::Services;
use crate::wiring::config::WebhookConfig;

/// How long a rotated secret keeps signing beside its successor, so that a client can deploy
/// the new one without losing an event.
pub const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// Random bytes in a signing secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// Longest URL and description taken.
const MAX_URL_LEN: usize = 2_048;
const MAX_DESCRIPTION_LEN: usize = 512;

/// Why an endpoint URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("must be an https URL")]
    NotHttps,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("{host} does not resolve to an address")]
    Unresolved { host: String },
    #[error("{host} resolves to {address}, which is not a public address")]
    NotPublic { host: String, address: IpAddr },
}

/// Whether webhooks may go to `url`: `https` to public addresses only, unless private ones
/// are allowed (`WEBHOOK_ALLOW_PRIVATE`, which also allows `http`). A name is resolved, and
/// refused if any of its addresses is not public. Answers the addresses to connect to.
pub async fn check_destination(
    url: &Url,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, UrlRefusal> {
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefusal::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = url
        .host_str()
        .ok_or_else(|| UrlRefusal::Invalid("it has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| UrlRefusal::Invalid("it has no port".into()))?;
    let addresses = resolve(host, port).await?;
    if !allow_private {
        if let Some(private) = addresses.iter().find(|a| !is_public_address(a.ip())) {
            return Err(UrlRefusal::NotPublic {
                host: host.to_owned(),
                address: private.ip(),
            });
        }
    }
    Ok(addresses)
}

/// The addresses of `host` (an address itself, bracketed for IPv6, or a name).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, UrlRefusal> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(address) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(address, port)]);
    }
    let unresolved = || UrlRefusal::Unresolved {
        host: host.to_owned(),
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| unresolved())?
        .collect();
    if addresses.is_empty() {
        return Err(unresolved());
    }
    Ok(addresses)
}

/// A new signing secret: `whsec_` and the base64 of random bytes from the OS CSPRNG.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    OsRng.unwrap_err().fill(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// What a client asks for when it registers an endpoint.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
}

/// What a client changes on an endpoint; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    /// Enabling again an endpoint the service disabled (gone, failing) clears its failures.
    pub enabled: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no webhook endpoint with id `{0}`")]
    NotFound(EndpointId),
    #[error("url: {0}")]
    Url(#[from] UrlRefusal),
    #[error("events: name at least one event type")]
    NoEvents,
    #[error("{field}: longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asks: an API key's name, and whether it is an admin's (which sees every endpoint).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub api_key: &'a str,
    pub is_admin: bool,
}

impl Caller<'_> {
    fn sees(&self, endpoint: &WebhookEndpoint) -> bool {
        self.is_admin || endpoint.api_key == self.api_key
    }
}

fn sorted(mut events: Vec<EventType>) -> Result<Vec<EventType>, EndpointError> {
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(EndpointError::NoEvents);
    }
    Ok(events)
}

fn bounded(
    field: &'static str,
    text: Option<String>,
    max: usize,
) -> Result<Option<String>, EndpointError> {
    match text {
        Some(text) if text.chars().count() > max => Err(EndpointError::TooLong { field, max }),
        Some(text) if text.trim().is_empty() => Ok(None),
        text => Ok(text),
    }
}

async fn checked_url(text: &str, config: &WebhookConfig) -> Result<String, EndpointError> {
    if text.len() > MAX_URL_LEN {
        return Err(EndpointError::TooLong {
            field: "url",
            max: MAX_URL_LEN,
        });
    }
    let url = Url::parse(text).map_err(|error| UrlRefusal::Invalid(error.to_string()))?;
    check_destination(&url, config.allow_private).await?;
    Ok(url.to_string())
}

impl Services {
    /// Registers an endpoint for the caller's key; the answer holds its secret, which is
    /// never shown again by anything but a rotation.
    pub async fn create_webhook_endpoint(
        &self,
        caller: Caller<'_>,
        request: NewEndpoint,
    ) -> Result<WebhookEndpoint, EndpointError> {
        let events = sorted(request.events)?;
        let description = bounded("description", request.description, MAX_DESCRIPTION_LEN)?;
        let url = checked_url(&request.url, &self.webhook_config).await?;
        let now = self.clock.now();
        let endpoint = WebhookEndpoint {
            id: EndpointId::generate(),
            api_key: caller.api_key.to_owned(),
            url,
            description,
            events,
            secret: new_secret(),
            previous_secret: None,
            previous_secret_until: None,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        self.webhooks.create_endpoint(&endpoint).await?;
        tracing::info!(endpoint_id = %endpoint.id, api_key = caller.api_key, "webhook endpoint registered");
        Ok(endpoint)
    }

    /// The caller's endpoints (every one for an admin), oldest first.
    pub async fn webhook_endpoints(
        &self,
        caller: Caller<'_>,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let key = (!caller.is_admin).then(|| caller.api_key.to_owned());
        self.webhooks.endpoints(key).await
    }

    /// One endpoint the caller sees; another key's is not found.
    pub async fn webhook_endpoint(
        &self,
        caller: Caller<'_>,
        id: EndpointId,
    ) -> Result<WebhookEndpoint, EndpointError> {
        match self.webhooks.endpoint(id).await? {
            Some(endpoint) if caller.sees(&endpoint) => Ok(endpoint),
            _ => Err(EndpointError::NotFound(id)),
        }
    }

    pub async fn update_webhook_endpoint(
        &self,
        caller: Caller<'_>,
        id: EndpointId,
        changes: EndpointChanges,
    ) -> Result<WebhookEndpoint, EndpointError> {
        let mut endpoint = self.webhook_endpoint(caller, id).await?;
        if let Some(url) = changes.url {
            endpoint.url = checked_url(&url, &self.webhook_config).await?;
        }
        if let Some(events) = changes.events {
            endpoint.events = sorted(events)?;
        }
        if let Some(description) = changes.description {
            endpoint.description = bounded("description", description, MAX_DESCRIPTION_LEN)?;
        }
        match changes.enabled {
            Some(true) if !endpoint.enabled => {
                endpoint.enabled = true;
                endpoint.disabled_reason = None;
                endpoint.failing_since = None;
            }
            Some(false) if endpoint.enabled => {
                endpoint.enabled = false;
                endpoint.disabled_reason = None;
            }
            _ => {}
        }
        endpoint.updated_at = self.clock.now();
        if !self.webhooks.update_endpoint(&endpoint).await? {
            return Err(EndpointError::NotFound(id));
        }
        Ok(endpoint)
    }

    pub async fn delete_webhook_endpoint(
        &self,
        caller: Caller<'_>,
        id: EndpointId,
    ) -> Result<(), EndpointError> {
        self.webhook_endpoint(caller, id).await?;
        if !self.webhooks.delete_endpoint(id).await? {
            return Err(EndpointError::NotFound(id));
        }
        Ok(())
    }

    /// A new secret for the endpoint; the one it replaces keeps signing beside it for
    /// [`ROTATION_OVERLAP`] (a secret rotated twice within that time drops the oldest).
    pub async fn rotate_webhook_secret(
        &self,
        caller: Caller<'_>,
        id: EndpointId,
    ) -> Result<WebhookEndpoint, EndpointError> {
        let mut endpoint = self.webhook_endpoint(caller, id).await?;
        let now = self.clock.now();
        endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, new_secret()));
        endpoint.previous_secret_until = Some(now + ROTATION_OVERLAP);
        endpoint.updated_at = now;
        if !self.webhooks.update_endpoint(&endpoint).await? {
            return Err(EndpointError::NotFound(id));
        }
        tracing::info!(endpoint_id = %id, "webhook secret rotated");
        Ok(endpoint)
    }

    /// Sends again every event of the endpoint's key since `since` that it receives; how many.
    pub async fn replay_webhook_events(
        &self,
        caller: Caller<'_>,
        id: EndpointId,
        since: DateTime<Utc>,
    ) -> Result<u64, EndpointError> {
        self.webhook_endpoint(caller, id).await?;
        Ok(self.webhooks.replay(id, since, self.clock.now()).await?)
    }

    /// Emits `verification.channel_fallback`: the verification's code went out on `to` after
    /// `from`. For the fallback workflow to call once the fallback's message is stored.
    pub async fn emit_channel_fallback(
        &self,
        verification: &Verification,
        from: Channel,
        to: Channel,
    ) -> Result<Option<EventId>, StoreError> {
        let detail = serde_json::json!({ "from": from, "to": to }).to_string();
        self.webhooks
            .record_event(&NewEvent {
                kind: EventType::VerificationChannelFallback,
                object_id: verification.id.as_uuid(),
                api_key: verification.api_key.clone(),
                at: self.clock.now(),
                status: Some(verification.status.as_str().to_owned()),
                detail: Some(detail),
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[tokio::test]
    async fn endpoints_on_private_addresses_or_plain_http_are_refused_unless_allowed() {
        for (text, refusal) in [
            ("http://hooks.example.com/x", UrlRefusal::NotHttps),
            (
                "https://127.0.0.1/x",
                UrlRefusal::NotPublic {
                    host: "127.0.0.1".into(),
                    address: "127.0.0.1".parse().unwrap(),
                },
            ),
            (
                "https://169.254.169.254/latest/meta-data",
                UrlRefusal::NotPublic {
                    host: "169.254.169.254".into(),
                    address: "169.254.169.254".parse().unwrap(),
                },
            ),
            (
                "https://[::ffff:10.0.0.1]/x",
                UrlRefusal::NotPublic {
                    host: "[::ffff:a00:1]".into(),
                    address: "::ffff:10.0.0.1".parse().unwrap(),
                },
            ),
            ("https://user:pw@93.184.216.34/x", UrlRefusal::Credentials),
        ] {
            assert_eq!(
                check_destination(&url(text), false).await,
                Err(refusal),
                "{text}"
            );
        }
        // `localhost` resolves to loopback addresses only.
        assert!(matches!(
            check_destination(&url("https://localhost:8443/x"), false).await,
            Err(UrlRefusal::NotPublic { .. })
        ));
        assert!(check_destination(&url("http://127.0.0.1:9/x"), true)
            .await
            .is_ok());
        assert!(check_destination(&url("https://93.184.216.34/x"), false)
            .await
            .is_ok());
    }

    #[test]
    fn a_secret_is_whsec_and_the_base64_of_32_random_bytes() {
        let secret = new_secret();
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(new_secret(), secret);
    }
}
