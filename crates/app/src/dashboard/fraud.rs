//! The fraud guard for operators: the blocks in force with their reasons and counts, placing
//! and lifting blocks, the safe list, each policy's mode (changeable), and what policies in
//! monitor mode would have blocked. Every change is a form carrying the session's token, made
//! through the same use cases as the admin API, under the operator's key name.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use domain::fraud::{Action, BlockPeriod, Mode, Policy, Prefix};
use ports::DecisionFilter;
use serde::Deserialize;

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::usecases::fraud_admin::{ManualBlock, Note};
use crate::Services;

/// Monitor findings the page lists: the newest.
const FINDINGS: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    /// What the last change did, said back after its redirect.
    #[serde(default)]
    done: String,
}

fn hidden_token(operator: &Operator) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        esc(&operator.form_token)
    )
}

pub async fn page(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(notice): Query<Notice>,
) -> Result<Html<String>, PageError> {
    let now = services.now();
    let token = hidden_token(&operator);
    let mut body = String::new();
    if !notice.done.is_empty() {
        let _ = write!(
            body,
            r#"<p class="notice" role="status">{}</p>"#,
            esc(&notice.done)
        );
    }

    body.push_str("<h2>Blocks in force</h2>");
    let blocks = services.fraud_blocks().await?;
    let rows: Vec<Vec<String>> = blocks
        .iter()
        .map(|block| {
            let reasons: Vec<String> = block
                .reasons
                .iter()
                .map(|reason| format!("<code>{}</code> {}", esc(reason.code.as_str()), esc(&reason.detail)))
                .collect();
            let prefix = block.prefix.to_string();
            vec![
                format!(r#"<span class="mono">{}</span>"#, esc(&prefix)),
                reasons.join("<br>"),
                count(block.codes),
                if block.is_manual() { "by hand" } else { "the guard" }.to_owned(),
                html::time(block.created_at, now),
                block
                    .expires_at
                    .map_or_else(|| "when lifted".to_owned(), |at| html::time(at, now)),
                format!(
                    r#"<form class="inline" method="post" action="/dashboard/fraud/unblock" data-confirm="Lift the block on {p}?">{token}<input type="hidden" name="prefix" value="{p}"><button type="submit" class="secondary" aria-label="Unblock {p}">Unblock</button></form>"#,
                    p = esc(&prefix)
                ),
            ]
        })
        .collect();
    body.push_str(&html::table(
        "Blocks, by prefix",
        &[
            "Prefix",
            "Reasons",
            "Codes in the hour before",
            "Placed by",
            "Since",
            "Lifts",
            "Action",
        ],
        &rows,
        "No block is in force.",
    ));
    let _ = write!(
        body,
        r#"<form class="row" method="post" action="/dashboard/fraud/block" aria-label="Block a prefix">{token}
<div class="field"><label for="block-prefix">Prefix to block</label><input id="block-prefix" name="prefix" required placeholder="+447700900" class="mono"></div>
<div class="field"><label for="block-note">Note</label><input id="block-note" name="note" maxlength="200"></div>
<div class="field"><label for="block-hours">Hours (empty: until lifted)</label><input id="block-hours" name="hours" type="number" min="1" max="720"></div>
<button type="submit">Block</button></form>"#
    );

    body.push_str("<h2>Safe list</h2>");
    let safe = services.fraud_safe_list().await?;
    let rows: Vec<Vec<String>> = safe
        .iter()
        .map(|entry| {
            let prefix = entry.prefix.to_string();
            vec![
                format!(r#"<span class="mono">{}</span>"#, esc(&prefix)),
                esc(entry.note.as_deref().unwrap_or("")),
                html::time(entry.added_at, now),
                format!(
                    r#"<form class="inline" method="post" action="/dashboard/fraud/safe/remove" data-confirm="Take {p} off the safe list?">{token}<input type="hidden" name="prefix" value="{p}"><button type="submit" class="secondary" aria-label="Remove {p} from the safe list">Remove</button></form>"#,
                    p = esc(&prefix)
                ),
            ]
        })
        .collect();
    body.push_str(&html::table(
        "Never blocked",
        &["Prefix", "Note", "Added", "Action"],
        &rows,
        "The safe list is empty.",
    ));
    let _ = write!(
        body,
        r#"<form class="row" method="post" action="/dashboard/fraud/safe" aria-label="Add to the safe list">{token}
<div class="field"><label for="safe-prefix">Prefix or number</label><input id="safe-prefix" name="prefix" required placeholder="+15551234567" class="mono"></div>
<div class="field"><label for="safe-note">Note</label><input id="safe-note" name="note" maxlength="200"></div>
<button type="submit">Add to the safe list</button></form>"#
    );

    body.push_str("<h2>Policies</h2>");
    let policies = services.fraud_policies().await?;
    let _ = write!(
        body,
        r#"<form method="post" action="/dashboard/fraud/policies" aria-label="Policy modes">{token}<div class="scroll" tabindex="0" role="region" aria-label="Policy modes"><table><caption>Each policy's mode, for every instance</caption><thead><tr><th scope="col">Policy</th><th scope="col">Mode</th></tr></thead><tbody>"#
    );
    for (policy, mode) in policies.iter() {
        let _ = write!(
            body,
            r#"<tr><th scope="row"><label for="mode-{p}">{p}</label></th><td><select id="mode-{p}" name="{p}">"#,
            p = esc(policy.as_str())
        );
        for each in [Mode::Enforce, Mode::Monitor, Mode::Off] {
            let selected = if each == mode { " selected" } else { "" };
            let _ = write!(
                body,
                r#"<option value="{m}"{selected}>{m}</option>"#,
                m = each.as_str()
            );
        }
        body.push_str("</select></td></tr>");
    }
    body.push_str(r#"</tbody></table></div><button type="submit">Save modes</button></form>"#);

    body.push_str("<h2>What monitor mode would have blocked</h2>");
    let findings = services
        .fraud_decisions(&DecisionFilter {
            action: Some(Action::Monitor),
            since: None,
            until: None,
            before: None,
            limit: FINDINGS,
        })
        .await?;
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|logged| {
            let reasons: Vec<String> = logged
                .decision
                .reasons
                .iter()
                .map(|reason| {
                    format!(
                        "<code>{}</code> {}",
                        esc(reason.code.as_str()),
                        esc(&reason.detail)
                    )
                })
                .collect();
            vec![
                html::time(logged.at, now),
                format!(r#"<span class="mono">{}</span>"#, esc(&logged.to.masked())),
                esc(&logged.api_key),
                reasons.join("<br>"),
            ]
        })
        .collect();
    body.push_str(&html::table(
        "Newest first",
        &["When", "To", "API key", "Findings"],
        &rows,
        "No policy in monitor mode has found anything.",
    ));
    Ok(Html(html::page(
        "Fraud",
        Some(Nav::Fraud),
        Some(&operator.header()),
        &[],
        &body,
    )))
}

fn prefix(text: &str) -> Result<Prefix, PageError> {
    Prefix::parse(text.trim()).map_err(|error| PageError::Invalid(error.to_string()))
}

fn done(what: &str) -> Response {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("done", what)
        .finish();
    Redirect::to(&format!("/dashboard/fraud?{query}")).into_response()
}

#[derive(Deserialize)]
pub struct PrefixForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    hours: String,
}

pub async fn unblock(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(form): Form<PrefixForm>,
) -> Result<Response, PageError> {
    operator.check_form(&form.csrf)?;
    let prefix = prefix(&form.prefix)?;
    if services
        .unblock_prefix(&operator.session.name, &prefix)
        .await?
    {
        Ok(done(&format!("The block on {prefix} is lifted.")))
    } else {
        Err(PageError::NotFound(format!(
            "No block is in force on exactly {prefix}."
        )))
    }
}

pub async fn block(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(form): Form<PrefixForm>,
) -> Result<Response, PageError> {
    operator.check_form(&form.csrf)?;
    let prefix = prefix(&form.prefix)?;
    let note = Note::parse(&form.note).map_err(|error| PageError::Invalid(error.to_string()))?;
    let period = match form.hours.trim() {
        "" => None,
        hours => Some(
            hours
                .parse::<BlockPeriod>()
                .map_err(|error| PageError::Invalid(error.to_string()))?,
        ),
    };
    let block = services
        .block_prefix(
            &operator.session.name,
            ManualBlock {
                prefix,
                note,
                period,
            },
        )
        .await?;
    Ok(done(&format!("{} is blocked.", block.prefix)))
}

pub async fn add_safe(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(form): Form<PrefixForm>,
) -> Result<Response, PageError> {
    operator.check_form(&form.csrf)?;
    let prefix = prefix(&form.prefix)?;
    let note = Note::parse(&form.note).map_err(|error| PageError::Invalid(error.to_string()))?;
    let entry = services
        .add_safe_prefix(&operator.session.name, prefix, note)
        .await?;
    Ok(done(&format!("{} is on the safe list.", entry.prefix)))
}

pub async fn remove_safe(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(form): Form<PrefixForm>,
) -> Result<Response, PageError> {
    operator.check_form(&form.csrf)?;
    let prefix = prefix(&form.prefix)?;
    if services
        .remove_safe_prefix(&operator.session.name, &prefix)
        .await?
    {
        Ok(done(&format!("{prefix} is off the safe list.")))
    } else {
        Err(PageError::NotFound(format!(
            "{prefix} is not on the safe list."
        )))
    }
}

/// Every policy's mode, as the form sends them: `csrf` and one field per policy.
pub async fn set_policies(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let presented = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map_or("", |(_, value)| value.as_str());
    operator.check_form(presented)?;
    let mut changes = Vec::new();
    for (name, value) in &fields {
        if name == "csrf" {
            continue;
        }
        let policy: Policy = name
            .parse()
            .map_err(|_| PageError::Invalid(format!("there is no policy `{name}`")))?;
        let mode: Mode = value
            .parse()
            .map_err(|_| PageError::Invalid(format!("`{value}` is not a mode")))?;
        changes.push((policy, mode));
    }
    services.set_fraud_policies(&changes).await?;
    tracing::info!(
        admin = operator.session.name,
        "fraud policy modes set from the dashboard"
    );
    Ok(done("The policies' modes are saved."))
}
