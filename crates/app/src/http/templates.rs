//! The templates a client may send with, and a dry run of one: the text it renders to and
//! what that costs in segments, without queuing anything.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use template::{Encoding, RenderError};
use utoipa::ToSchema;

use super::extract::{ApiClient, ApiJson};
use super::ApiError;
use crate::Services;

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    name: String,
    /// Top-level keys `data` must hold.
    variables: Vec<String>,
    /// Locales with a variant of their own; others get the template itself.
    locales: Vec<String>,
    /// Its messages carry a secret (a code): never logged, and their body is erased once
    /// sent, failed or expired. Marked by a first line `{{!-- sensitive --}}`.
    sensitive: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    templates: Vec<TemplateView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    data: serde_json::Map<String, serde_json::Value>,
    /// A language tag (`fr`, `pt-BR`); the variant for it, if any, is rendered.
    locale: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    /// The template actually rendered (`two-factor-auth.fr` for locale `fr-CA`).
    template: String,
    text: String,
    /// `GSM-7`, or `UCS-2` as soon as one character is outside GSM-7.
    #[schema(value_type = String, example = "GSM-7")]
    encoding: Encoding,
    characters: usize,
    segments: u32,
    /// Set when the text costs more than one segment; names the characters that made it UCS-2.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Every template: its name, the variables it needs, its locales, whether it is sensitive.
#[utoipa::path(
    get,
    path = "/v1/templates",
    operation_id = "list_templates",
    tag = "templates",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The templates", body = TemplateList),
        (status = "default", description = "An error", body = ApiError,
            content_type = "application/problem+json")
    )
)]
pub async fn list(State(services): State<Arc<Services>>, _client: ApiClient) -> Json<TemplateList> {
    let templates = services
        .templates()
        .catalogue()
        .into_iter()
        .map(|info| TemplateView {
            name: info.name,
            variables: info.variables,
            locales: info.locales,
            sensitive: info.sensitive,
        })
        .collect();
    Json(TemplateList { templates })
}

/// Renders a template with `data` as `POST /v1/messages` would, and counts its segments.
/// Nothing is queued.
#[utoipa::path(
    post,
    path = "/v1/templates/{name}/preview",
    tag = "templates",
    security(("api_key" = [])),
    params(("name" = String, Path, description = "The template's name")),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "The rendered text and its cost", body = PreviewView),
        (status = "default", description = "An error; a missing variable is a 422 naming it",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn preview(
    State(services): State<Arc<Services>>,
    _client: ApiClient,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Json<PreviewView>, ApiError> {
    let resolved = services
        .templates()
        .resolve(&name, body.locale.as_deref())
        .ok_or_else(|| ApiError::not_found(format!("there is no template `{name}`")))?;
    let text = services
        .templates()
        .render(&resolved, &serde_json::Value::Object(body.data))
        .map_err(|error| match error {
            RenderError::MissingVariable { variable, .. } => ApiError::invalid_field(
                &format!("data.{variable}"),
                "missing-template-variable",
                format!("template `{name}` needs `{variable}` in `data`"),
            ),
            RenderError::UnknownTemplate(_) => {
                ApiError::not_found(format!("there is no template `{name}`"))
            }
            error @ RenderError::Failed { .. } => {
                ApiError::invalid_field("data", "template-render-failed", error.to_string())
            }
        })?;
    let info = template::analyze(&text);
    let warning = (info.segments > 1).then(|| {
        let cost = format!(
            "this text takes {} segments, each billed as one SMS",
            info.segments
        );
        match info.encoding {
            Encoding::Gsm7 => cost,
            // Named, so that the writer knows what to replace to fit more in a segment.
            Encoding::Ucs2 => {
                let named: Vec<String> = template::outside_gsm7(&text)
                    .into_iter()
                    .map(|c| format!("`{c}`"))
                    .collect();
                format!(
                    "{cost}; it is UCS-2, less than half as many characters a segment as \
                     GSM-7, because of {}",
                    named.join(", ")
                )
            }
        }
    });
    Ok(Json(PreviewView {
        template: resolved,
        text,
        encoding: info.encoding,
        characters: info.characters,
        segments: info.segments,
        warning,
    }))
}
