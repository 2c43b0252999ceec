//! Templates: each template with its locales and variables, and a preview of one rendered with
//! the operator's data (its encoding, characters and segments, as `POST /v1/messages` would
//! count them). The page renders the preview itself; its script renders it again as the data
//! is typed, through the same handler answering JSON.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use template::{Encoding, RenderError};

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::{assets, PageError};
use crate::Services;

#[derive(Debug, Default, Deserialize)]
pub struct PreviewParams {
    #[serde(default)]
    name: String,
    #[serde(default)]
    locale: String,
    /// A JSON object: the template's variables.
    #[serde(default)]
    data: String,
    /// `json`: the preview alone, for the page's script.
    #[serde(default)]
    format: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Preview {
    text: String,
    encoding: String,
    characters: String,
    segments: String,
    /// Why nothing was rendered, or what costs more than one segment.
    problem: String,
}

fn preview_of(services: &Services, params: &PreviewParams) -> Preview {
    let refused = |problem: String| Preview {
        problem,
        ..Preview::default()
    };
    let locale = Some(params.locale.trim()).filter(|locale| !locale.is_empty());
    let Some(resolved) = services.templates().resolve(&params.name, locale) else {
        return refused(format!("There is no template `{}`.", params.name));
    };
    let data = match params.data.trim() {
        "" => serde_json::Value::Object(serde_json::Map::new()),
        text => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            Ok(_) => return refused("The data must be a JSON object.".to_owned()),
            Err(error) => return refused(format!("The data is not JSON: {error}.")),
        },
    };
    match services.templates().render(&resolved, &data) {
        Ok(text) => {
            let info = template::analyze(&text);
            let encoding = match info.encoding {
                Encoding::Gsm7 => "GSM-7",
                Encoding::Ucs2 => "UCS-2",
            };
            let problem = if info.segments > 1 {
                format!(
                    "{} segments, each billed as one SMS.",
                    count(u64::from(info.segments))
                )
            } else {
                String::new()
            };
            Preview {
                text,
                encoding: encoding.to_owned(),
                characters: count(info.characters as u64),
                segments: count(u64::from(info.segments)),
                problem,
            }
        }
        Err(RenderError::MissingVariable { variable, .. }) => {
            refused(format!("The template needs `{variable}` in the data."))
        }
        Err(error) => refused(error.to_string()),
    }
}

/// A plausible value for a variable, by its name.
fn example(variable: &str) -> serde_json::Value {
    let lower = variable.to_ascii_lowercase();
    let text = if lower.contains("code") {
        "123456"
    } else if lower.contains("minutes") {
        return serde_json::Value::from(10);
    } else if lower.contains("amount") {
        "12.50"
    } else if lower.contains("currency") {
        "EUR"
    } else if lower.contains("payee") {
        "Example Shop"
    } else {
        "example"
    };
    serde_json::Value::String(text.to_owned())
}

/// The preview alone, as JSON (`format=json`), or the page with it.
pub async fn preview(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(params): Query<PreviewParams>,
) -> Result<Response, PageError> {
    if params.format == "json" {
        return Ok(Json(preview_of(&services, &params)).into_response());
    }
    page(State(services), operator, Query(params)).await
}

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(mut params): Query<PreviewParams>,
) -> Result<Response, PageError> {
    let catalogue = services.templates().catalogue();
    let rows: Vec<Vec<String>> = catalogue
        .iter()
        .map(|info| {
            let locales = if info.locales.is_empty() {
                "default only".to_owned()
            } else {
                info.locales.join(", ")
            };
            vec![
                format!(
                    r#"<a href="/dashboard/templates?name={n}">{n}</a>"#,
                    n = esc(&info.name)
                ),
                esc(&locales),
                esc(&info.variables.join(", ")),
                if info.sensitive { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let mut body = html::table(
        "Templates, by name",
        &["Template", "Locales", "Variables", "Sensitive"],
        &rows,
        "No template.",
    );
    if params.name.is_empty() {
        if let Some(first) = catalogue.first() {
            params.name.clone_from(&first.name);
        }
    }
    let chosen = catalogue.iter().find(|info| info.name == params.name);
    if params.data.is_empty() {
        if let Some(info) = chosen {
            // An example for each variable, so that the first preview renders.
            let example: serde_json::Map<String, serde_json::Value> = info
                .variables
                .iter()
                .map(|variable| (variable.clone(), example(variable)))
                .collect();
            params.data = serde_json::Value::Object(example).to_string();
        }
    }
    let preview = preview_of(&services, &params);

    body.push_str(r#"<h2 id="preview-heading">Preview</h2><form id="preview-form" method="get" action="/dashboard/templates" aria-labelledby="preview-heading"><div class="row">"#);
    body.push_str(
        r#"<div class="field"><label for="name">Template</label><select id="name" name="name">"#,
    );
    for info in &catalogue {
        let selected = if info.name == params.name {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            r#"<option value="{n}"{selected}>{n}</option>"#,
            n = esc(&info.name)
        );
    }
    body.push_str("</select></div>");
    body.push_str(r#"<div class="field"><label for="locale">Locale</label><select id="locale" name="locale"><option value="">Default</option>"#);
    if let Some(info) = chosen {
        for locale in &info.locales {
            let selected = if *locale == params.locale {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                body,
                r#"<option value="{l}"{selected}>{l}</option>"#,
                l = esc(locale)
            );
        }
    }
    let _ = write!(
        body,
        r#"</select></div></div>
<div class="field"><label for="data">Data (a JSON object)</label><textarea id="data" name="data" spellcheck="false">{}</textarea></div>
<button type="submit">Preview</button></form>
<div aria-live="polite">
<p class="preview" id="preview-text">{}</p>
<dl class="cards">
<div class="card"><dt>Encoding</dt><dd id="preview-encoding">{}</dd></div>
<div class="card"><dt>Characters</dt><dd id="preview-characters">{}</dd></div>
<div class="card"><dt>Segments</dt><dd id="preview-segments">{}</dd></div>
</dl>
<p class="hint" id="preview-problem">{}</p>
</div>"#,
        esc(&params.data),
        esc(&preview.text),
        esc(&preview.encoding),
        esc(&preview.characters),
        esc(&preview.segments),
        esc(&preview.problem),
    );
    Ok(Html(html::page(
        "Templates",
        Some(Nav::Templates),
        Some(&operator.header()),
        &[&assets::url("templates.js")],
        &body,
    ))
    .into_response())
}
