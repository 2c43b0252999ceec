//! The parts of the OpenAPI description that belong to no one handler: the API's title, its
//! tags, and how an API key is presented.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sms-notify",
        description = "Sends templated SMS and WhatsApp messages through Twilio and runs \
            two-factor verification. Every error is an RFC 9457 `application/problem+json` \
            document naming the offending field."
    ),
    modifiers(&ApiKeyAuth),
    tags(
        (name = "messages", description = "Queue messages and follow them to their final status"),
        (name = "verifications", description = "One-time codes by SMS"),
        (name = "templates", description = "What can be sent, and what it costs"),
        (name = "reports", description = "Usage, delivery and errors over time"),
        (name = "webhooks", description = "Signed events to your service (Standard Webhooks): endpoints, secrets, replays"),
        (name = "fraud", description = "The fraud guard: its policies, blocks, safe list and decision log (admin keys only)"),
        (name = "data", description = "Erasure of a phone number's data on its owner's request (admin keys only)"),
        (name = "operations", description = "Health, readiness, metrics, this description"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer <key>`, the key being one of `API_KEYS` or `ADMIN_API_KEYS`.
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
