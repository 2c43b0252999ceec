//! Messages and verifications: a search (by id, or by API key, number, status and time, a
//! page at a time) and one message's or verification's timeline. Numbers are shown masked,
//! as the logs show them; the search takes a whole number and finds its messages.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{Message, MessageId, MessageStatus, PhoneNumber, VerificationId};
use ports::{MessageCursor, MessageFilter, StoredEvent};
use serde::Deserialize;

use super::html::{self, count, esc, Nav};
use super::session::Operator;
use super::PageError;
use crate::Services;

/// Messages a page of results shows.
const PAGE: u32 = 50;

/// The periods the search offers, by the value its form sends.
const PERIODS: [(&str, &str, i64); 4] = [
    ("1h", "Last hour", 1),
    ("24h", "Last 24 hours", 24),
    ("7d", "Last 7 days", 24 * 7),
    ("30d", "Last 30 days", 24 * 30),
];

#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    /// A message's or verification's id.
    #[serde(default)]
    id: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    before: String,
}

fn option(value: &str, label: &str, selected: bool) -> String {
    let selected = if selected { " selected" } else { "" };
    format!(
        r#"<option value="{}"{selected}>{}</option>"#,
        esc(value),
        esc(label)
    )
}

pub async fn search(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Query(params): Query<SearchParams>,
) -> Result<Response, PageError> {
    let id = params.id.trim();
    if !id.is_empty() {
        // An id names one thing: its timeline, whichever of the two it is.
        if let Ok(message) = id.parse::<MessageId>() {
            if services.message_history(message).await?.is_some() {
                return Ok(Redirect::to(&format!("/dashboard/messages/{message}")).into_response());
            }
        }
        if let Ok(verification) = id.parse::<VerificationId>() {
            if services.verification_history(verification).await?.is_some() {
                return Ok(
                    Redirect::to(&format!("/dashboard/verifications/{verification}"))
                        .into_response(),
                );
            }
        }
    }
    let keys = services.api_key_names();
    let key = if params.key.is_empty() {
        // Clients' messages are what an operator looks for first.
        keys.iter()
            .find(|(_, admin)| !admin)
            .or(keys.first())
            .map(|(name, _)| (*name).to_owned())
            .unwrap_or_default()
    } else {
        params.key.clone()
    };
    let period = PERIODS
        .iter()
        .find(|(value, _, _)| *value == params.period)
        .unwrap_or(&PERIODS[2]);

    let mut body = String::new();
    let mut problems = Vec::new();
    if !id.is_empty() {
        problems.push(format!("No message or verification has the id {id}."));
    }
    let to = match params.to.trim() {
        "" => None,
        text => match PhoneNumber::parse(text) {
            Ok(number) => Some(number),
            Err(error) => {
                problems.push(format!("The number is not one: {error}."));
                None
            }
        },
    };
    let status = params.status.parse::<MessageStatus>().ok();
    let before = decode_cursor(&params.before);

    body.push_str(r#"<form class="row" method="get" action="/dashboard/messages" role="search" aria-label="Find messages">"#);
    let _ = write!(
        body,
        r#"<div class="field"><label for="id">Message or verification id</label><input id="id" name="id" value="{}" size="38" class="mono"></div>"#,
        esc(id)
    );
    body.push_str(
        r#"<div class="field"><label for="key">API key</label><select id="key" name="key">"#,
    );
    for (name, admin) in &keys {
        let label = if *admin {
            format!("{name} (admin)")
        } else {
            (*name).to_owned()
        };
        body.push_str(&option(name, &label, *name == key));
    }
    body.push_str("</select></div>");
    let _ = write!(
        body,
        r#"<div class="field"><label for="to">Number (E.164)</label><input id="to" name="to" type="tel" value="{}" placeholder="+447700900123" autocomplete="off"></div>"#,
        esc(params.to.trim())
    );
    body.push_str(r#"<div class="field"><label for="status">Status</label><select id="status" name="status">"#);
    body.push_str(&option("", "Any", status.is_none()));
    for each in MessageStatus::ALL {
        body.push_str(&option(each.as_str(), each.as_str(), Some(each) == status));
    }
    body.push_str("</select></div>");
    body.push_str(r#"<div class="field"><label for="period">Created</label><select id="period" name="period">"#);
    for (value, label, _) in PERIODS {
        body.push_str(&option(value, label, value == period.0));
    }
    body.push_str(r#"</select></div><button type="submit">Search</button></form>"#);
    for problem in &problems {
        let _ = write!(
            body,
            r#"<p class="alert" role="alert">{}</p>"#,
            esc(problem)
        );
    }

    let now = services.now();
    let filter = MessageFilter {
        api_key: key.clone(),
        status,
        to,
        since: Some(now - TimeDelta::hours(period.2)),
        until: None,
        before,
        limit: PAGE + 1,
    };
    let mut messages = services.list_messages(&filter).await?;
    let more = messages.len() > PAGE as usize;
    messages.truncate(PAGE as usize);
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|(message, attempts)| row(message, attempts.len(), now))
        .collect();
    body.push_str(&html::table(
        &format!("Messages of {key}, newest first"),
        &[
            "Created", "Id", "To", "Status", "Channel", "Template", "Attempts", "Provider",
        ],
        &rows,
        "No message matches.",
    ));
    if more {
        if let Some((last, _)) = messages.last() {
            let next = format!(
                "/dashboard/messages?key={}&to={}&status={}&period={}&before={}",
                urlencode(&key),
                urlencode(params.to.trim()),
                urlencode(&params.status),
                period.0,
                encode_cursor(last)
            );
            let _ = write!(
                body,
                r#"<p><a href="{}">Older messages</a></p>"#,
                esc(&next)
            );
        }
    }
    Ok(Html(html::page(
        "Messages",
        Some(Nav::Messages),
        Some(&operator.header()),
        &[],
        &body,
    ))
    .into_response())
}

fn row(message: &Message, attempts: usize, now: DateTime<Utc>) -> Vec<String> {
    vec![
        html::time(message.created_at, now),
        format!(
            r#"<a class="mono" href="/dashboard/messages/{id}">{id}</a>"#,
            id = message.id
        ),
        format!(r#"<span class="mono">{}</span>"#, esc(&message.to.masked())),
        status(message.status.as_str()),
        esc(message.channel.as_str()),
        esc(message.template.as_deref().unwrap_or("")),
        count(attempts as u64),
        esc(message.provider.as_deref().unwrap_or("")),
    ]
}

fn status(text: &str) -> String {
    format!(r#"<span class="status-{0}">{0}</span>"#, esc(text))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Where the next page starts: the last row's time and id.
fn encode_cursor(message: &Message) -> String {
    format!("{}_{}", message.created_at.timestamp_micros(), message.id)
}

fn decode_cursor(text: &str) -> Option<MessageCursor> {
    let (micros, id) = text.split_once('_')?;
    Some(MessageCursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: id.parse().ok()?,
    })
}

/// What happened, in order: each line its time and what.
fn timeline(entries: &mut [(DateTime<Utc>, String)], now: DateTime<Utc>) -> String {
    entries.sort_by_key(|(at, _)| *at);
    let mut out = String::from(r#"<ol class="timeline">"#);
    for (at, what) in entries.iter() {
        let _ = write!(out, "<li>{} · {what}</li>", html::time(*at, now));
    }
    out.push_str("</ol>");
    out
}

fn event_entries(events: &[StoredEvent]) -> Vec<(DateTime<Utc>, String)> {
    events
        .iter()
        .map(|event| {
            let status = event
                .status
                .as_deref()
                .map(|status| format!(" ({})", esc(status)))
                .unwrap_or_default();
            (
                event.created_at,
                format!(
                    "event <code>{}</code> #{} sent to the client's webhooks{status}",
                    esc(event.kind.as_str()),
                    event.sequence
                ),
            )
        })
        .collect()
}

fn facts(pairs: &[(&str, String)]) -> String {
    let mut out = String::from(r#"<dl class="cards">"#);
    for (label, value) in pairs {
        let _ = write!(
            out,
            r#"<div class="card"><dt>{}</dt><dd>{value}</dd></div>"#,
            esc(label)
        );
    }
    out.push_str("</dl>");
    out
}

pub async fn message(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let not_found = || PageError::NotFound(format!("No message has the id {id}."));
    let parsed: MessageId = id.parse().map_err(|_| not_found())?;
    let history = services
        .message_history(parsed)
        .await?
        .ok_or_else(not_found)?;
    let now = services.now();
    let message = &history.message;
    let mut body = facts(&[
        ("Status", status(message.status.as_str())),
        (
            "To",
            format!(r#"<span class="mono">{}</span>"#, esc(&message.to.masked())),
        ),
        ("Channel", esc(message.channel.as_str())),
        ("API key", esc(&message.api_key)),
        ("Segments", count(u64::from(message.segments))),
        (
            "Price",
            message.price.as_ref().map_or_else(
                || "not yet known".to_owned(),
                |price| esc(&format!("{} {}", price.amount, price.currency)),
            ),
        ),
    ]);
    if let Some(verification) = message.verification_id {
        let _ = write!(
            body,
            r#"<p>A code of verification <a class="mono" href="/dashboard/verifications/{verification}">{verification}</a>.</p>"#
        );
    }
    let mut entries = vec![(message.created_at, "queued".to_owned())];
    for attempt in &history.attempts {
        let provider = attempt.provider.as_deref().unwrap_or("the provider");
        let error = attempt
            .error_code
            .as_deref()
            .map(|code| format!(", error {}", esc(code)))
            .unwrap_or_default();
        entries.push((
            attempt.started_at,
            format!(
                "attempt {} to {}: {}{error}",
                attempt.number,
                esc(provider),
                esc(attempt.outcome.as_str())
            ),
        ));
    }
    if let Some(code) = &message.error_code {
        let detail = message.error_message.as_deref().unwrap_or("");
        entries.push((
            message.updated_at,
            format!(
                r#"<span class="bad">{}: error {} {}</span>"#,
                esc(message.status.as_str()),
                esc(code),
                esc(detail)
            ),
        ));
    } else if message.updated_at > message.created_at {
        entries.push((
            message.updated_at,
            format!("now {}", status(message.status.as_str())),
        ));
    }
    entries.extend(event_entries(&history.events));
    body.push_str("<h2>Timeline</h2>");
    body.push_str(&timeline(&mut entries, now));
    Ok(Html(html::page(
        &format!("Message {id}"),
        Some(Nav::Messages),
        Some(&operator.header()),
        &[],
        &body,
    )))
}

pub async fn verification(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let not_found = || PageError::NotFound(format!("No verification has the id {id}."));
    let parsed: VerificationId = id.parse().map_err(|_| not_found())?;
    let history = services
        .verification_history(parsed)
        .await?
        .ok_or_else(not_found)?;
    let now = services.now();
    let verification = &history.verification;
    let risk = verification.risk.as_ref().map_or_else(
        || "not judged".to_owned(),
        |decision| {
            let reasons: Vec<String> = decision
                .reasons
                .iter()
                .map(|reason| format!("{}: {}", reason.code, reason.detail))
                .collect();
            if reasons.is_empty() {
                esc(decision.action.as_str())
            } else {
                format!(
                    "{} ({})",
                    esc(decision.action.as_str()),
                    esc(&reasons.join("; "))
                )
            }
        },
    );
    let mut body = facts(&[
        ("Status", status(verification.status_at(now).as_str())),
        (
            "To",
            format!(
                r#"<span class="mono">{}</span>"#,
                esc(&verification.to.masked())
            ),
        ),
        ("Channel", esc(verification.channel.as_str())),
        ("API key", esc(&verification.api_key)),
        (
            "Checks",
            format!(
                "{} of {}",
                count(u64::from(verification.check_count)),
                count(u64::from(verification.max_checks))
            ),
        ),
        ("Fraud decision", risk),
    ]);
    let mut entries = vec![(verification.created_at, "started".to_owned())];
    for attempt in &history.attempts {
        let provider = attempt.provider.as_deref().unwrap_or("no provider yet");
        entries.push((
            attempt.created_at,
            format!(
                r#"code by <strong>{}</strong> (message <a class="mono" href="/dashboard/messages/{id}">{id}</a>), {}"#,
                esc(attempt.channel.as_str()),
                status(attempt.status.as_str()),
                id = attempt.message_id
            ),
        ));
        if let Some(sent) = attempt.sent_at {
            entries.push((sent, format!("accepted by {}", esc(provider))));
        }
        if let Some(delivered) = attempt.delivered_at {
            entries.push((delivered, "receipt: delivered".to_owned()));
        }
    }
    entries.extend(event_entries(&history.events));
    body.push_str("<h2>Timeline</h2>");
    body.push_str(&timeline(&mut entries, now));
    Ok(Html(html::page(
        &format!("Verification {id}"),
        Some(Nav::Messages),
        Some(&operator.header()),
        &[],
        &body,
    )))
}
