//! Messages and verifications: a search (by id, or by number, API key, status and time, a
//! page at a time, under every key unless one is chosen) and one message's or verification's
//! timeline. Numbers are shown masked, as the logs show them; the search takes a whole number
//! and finds its messages or verifications.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Message, MessageId, MessageStatus, PhoneNumber, Verification, VerificationId,
    VerificationStatus,
};
use ports::{MessageCursor, MessageFilter, StoredEvent, VerificationCursor, VerificationFilter};
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
    /// `messages` (unless said) or `verifications`.
    #[serde(default)]
    what: String,
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
    // Every key's unless one is chosen: an operator looking for a number does not know which
    // client sent to it.
    let key = keys
        .iter()
        .find(|(name, _)| *name == params.key)
        .map(|(name, _)| (*name).to_owned());
    let verifications = params.what == "verifications";
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
    let before = params.before.as_str();

    body.push_str(r#"<form class="row" method="get" action="/dashboard/messages" role="search" aria-label="Find messages and verifications">"#);
    let _ = write!(
        body,
        r#"<div class="field"><label for="id">Message or verification id</label><input id="id" name="id" value="{}" size="38" class="mono"></div>"#,
        esc(id)
    );
    body.push_str(
        r#"<div class="field"><label for="what">Find</label><select id="what" name="what">"#,
    );
    body.push_str(&option("messages", "Messages", !verifications));
    body.push_str(&option("verifications", "Verifications", verifications));
    body.push_str("</select></div>");
    body.push_str(
        r#"<div class="field"><label for="key">API key</label><select id="key" name="key">"#,
    );
    body.push_str(&option("", "Every key", key.is_none()));
    for (name, admin) in &keys {
        let label = if *admin {
            format!("{name} (admin)")
        } else {
            (*name).to_owned()
        };
        body.push_str(&option(name, &label, key.as_deref() == Some(*name)));
    }
    body.push_str("</select></div>");
    let _ = write!(
        body,
        r#"<div class="field"><label for="to">Number (E.164)</label><input id="to" name="to" type="tel" value="{}" placeholder="+447700900123" autocomplete="off"></div>"#,
        esc(params.to.trim())
    );
    body.push_str(r#"<div class="field"><label for="status">Status</label><select id="status" name="status">"#);
    body.push_str(&option("", "Any", params.status.is_empty()));
    let statuses: Vec<&str> = if verifications {
        VerificationStatus::ALL
            .iter()
            .map(|each| each.as_str())
            .collect()
    } else {
        MessageStatus::ALL
            .iter()
            .map(|each| each.as_str())
            .collect()
    };
    for each in statuses {
        body.push_str(&option(each, each, each == params.status));
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
    let since = Some(now - TimeDelta::hours(period.2));
    let whose = key.as_deref().unwrap_or("every key");
    // Where the next page starts: the last row's time and id.
    let next_page = |cursor: String| {
        format!(
            "/dashboard/messages?what={}&key={}&to={}&status={}&period={}&before={cursor}",
            if verifications {
                "verifications"
            } else {
                "messages"
            },
            urlencode(key.as_deref().unwrap_or("")),
            urlencode(params.to.trim()),
            urlencode(&params.status),
            period.0,
        )
    };
    let more_link = if verifications {
        let filter = VerificationFilter {
            api_key: key.clone(),
            status: params.status.parse::<VerificationStatus>().ok(),
            to,
            since,
            until: None,
            before: decode_cursor(before).map(|(created_at, id)| VerificationCursor {
                created_at,
                id: VerificationId::from_uuid(id),
            }),
            limit: PAGE + 1,
            now,
        };
        let mut found = services.list_verifications(&filter).await?;
        let more = found.len() > PAGE as usize;
        found.truncate(PAGE as usize);
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|verification| verification_row(verification, now))
            .collect();
        body.push_str(&html::table(
            &format!("Verifications of {whose}, newest first"),
            &[
                "Created", "Id", "To", "Status", "Channel", "API key", "Checks", "Codes",
            ],
            &rows,
            "No verification matches.",
        ));
        found
            .last()
            .filter(|_| more)
            .map(|last| next_page(encode_cursor(last.created_at, last.id.as_uuid())))
    } else {
        let filter = MessageFilter {
            api_key: key.clone(),
            status: params.status.parse::<MessageStatus>().ok(),
            to,
            since,
            until: None,
            before: decode_cursor(before).map(|(created_at, id)| MessageCursor {
                created_at,
                id: MessageId::from_uuid(id),
            }),
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
            &format!("Messages of {whose}, newest first"),
            &[
                "Created", "Id", "To", "Status", "Channel", "API key", "Template", "Attempts",
                "Provider",
            ],
            &rows,
            "No message matches.",
        ));
        messages
            .last()
            .filter(|_| more)
            .map(|(last, _)| next_page(encode_cursor(last.created_at, last.id.as_uuid())))
    };
    if let Some(next) = more_link {
        let _ = write!(body, r#"<p><a href="{}">Older</a></p>"#, esc(&next));
    }
    Ok(Html(html::page(
        "Messages and verifications",
        Some(Nav::Messages),
        Some(&operator.header()),
        &[],
        &body,
    ))
    .into_response())
}

fn verification_row(verification: &Verification, now: DateTime<Utc>) -> Vec<String> {
    vec![
        html::time(verification.created_at, now),
        format!(
            r#"<a class="mono" href="/dashboard/verifications/{id}">{id}</a>"#,
            id = verification.id
        ),
        format!(
            r#"<span class="mono">{}</span>"#,
            esc(&verification.to.masked())
        ),
        status(verification.status_at(now).as_str()),
        esc(verification.channel.as_str()),
        esc(&verification.api_key),
        format!(
            "{} of {}",
            count(u64::from(verification.check_count)),
            count(u64::from(verification.max_checks))
        ),
        count(u64::from(verification.send_count)),
    ]
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
        esc(&message.api_key),
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
fn encode_cursor(created_at: DateTime<Utc>, id: uuid::Uuid) -> String {
    format!("{}_{id}", created_at.timestamp_micros())
}

fn decode_cursor(text: &str) -> Option<(DateTime<Utc>, uuid::Uuid)> {
    let (micros, id) = text.split_once('_')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id.parse().ok()?,
    ))
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
    let decision = verification.risk.as_ref().map_or_else(
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
        ("Fraud decision", decision.clone()),
    ]);
    // Checks are counted, not kept one by one: how many were made, and how it ended.
    let _ = write!(
        body,
        r#"<p data-checks="{checks}">{checks} of {max} checks made; {ending}.</p>"#,
        checks = verification.check_count,
        max = verification.max_checks,
        ending = match verification.status_at(now) {
            VerificationStatus::Pending => "still pending",
            VerificationStatus::Approved => "a check approved it",
            VerificationStatus::Canceled => "canceled by its client",
            VerificationStatus::MaxAttemptsReached => "every check allowed was wrong",
            VerificationStatus::Expired => "it expired unapproved",
        }
    );
    let mut entries = vec![(
        verification.created_at,
        format!(
            "started on {}; the fraud guard's decision: {}",
            esc(verification.channel.as_str()),
            decision
        ),
    )];
    for attempt in &history.attempts {
        let provider = attempt.provider.as_deref().unwrap_or("no provider yet");
        // Which code approved is kept, not when: the approval is told on its code's line.
        let approved = if attempt.approved {
            r#"; <span class="good">this code approved the verification</span>"#
        } else {
            ""
        };
        entries.push((
            attempt.created_at,
            format!(
                r#"code by <strong>{}</strong> (message <a class="mono" href="/dashboard/messages/{id}">{id}</a>), {}{approved}"#,
                esc(attempt.channel.as_str()),
                status(attempt.status.as_str()),
                id = attempt.message_id
            ),
        ));
        if let Some(sent) = attempt.sent_at {
            entries.push((sent, format!("accepted by {}", esc(provider))));
            // A receipt saying it did not arrive has no time of its own here: the message's
            // timeline has it.
            if matches!(
                attempt.status,
                MessageStatus::Undelivered | MessageStatus::Failed
            ) {
                entries.push((
                    sent,
                    format!(
                        r#"<span class="bad">receipt: {}</span>"#,
                        esc(attempt.status.as_str())
                    ),
                ));
            }
        }
        if let Some(delivered) = attempt.delivered_at {
            entries.push((delivered, "receipt: delivered".to_owned()));
        }
    }
    let concluded = verification.status_at(now);
    if concluded == VerificationStatus::Expired {
        entries.push((
            verification.expires_at,
            format!(
                "expired after {} of {} checks",
                count(u64::from(verification.check_count)),
                count(u64::from(verification.max_checks))
            ),
        ));
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
