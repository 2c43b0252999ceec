//! The fraud guard's admin routes: the blocks in force (`GET|POST /v1/fraud/blocks`,
//! `DELETE /v1/fraud/blocks/{prefix}`), the safe list (`GET|POST|DELETE /v1/fraud/safe-list`)
//! and the decision log (`GET /v1/fraud/decisions`). Only admin keys may use them: a client key
//! is one tenant among others, and a block or a safe-list entry changes what every tenant's
//! codes get; it is answered 403.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::fraud::{Action, Block, BlockPeriod, Decision, Prefix, Reason};
use domain::VerificationId;
use ports::{DecisionCursor, DecisionFilter, LoggedDecision, SafeEntry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiClient, ApiJson, ApiQuery, QueryTime};
use super::messages::{decode_cursor, encode_cursor, next_page, page_limit};
use super::ApiError;
use crate::usecases::fraud_admin::{ManualBlock, Note};
use crate::Services;

/// The caller, authenticated by an admin key (`ADMIN_API_KEYS`); a client key is a 403.
pub(super) struct AdminClient {
    /// The key's name, recorded beside what the admin changes.
    pub name: String,
}

impl FromRequestParts<Arc<Services>> for AdminClient {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let client = ApiClient::from_request_parts(parts, services).await?;
        if !client.is_admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin-only",
                "Admin key needed",
                "this route changes or shows what every API key is subject to: call it with an \
                 admin key (ADMIN_API_KEYS)",
            ));
        }
        Ok(AdminClient { name: client.name })
    }
}

/// A block in force, with why and since when.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockView {
    /// The blocked range (`+447700900`), or a whole number.
    #[schema(value_type = String, example = "+447700900")]
    prefix: Prefix,
    /// Why: each policy that found the prefix bad, or `manual_block` with who placed it.
    reasons: Vec<Reason>,
    /// Codes asked for the prefix in the hour before it was blocked or last renewed (0 for a
    /// block by hand).
    codes: u64,
    /// Placed by an admin (never overridden nor renewed by the guard).
    manual: bool,
    created_at: DateTime<Utc>,
    /// The guard renews its block while codes are still asked for the prefix.
    renewed_at: DateTime<Utc>,
    /// When it lifts by itself; absent for a block by hand that lasts until lifted.
    expires_at: Option<DateTime<Utc>>,
}

impl From<Block> for BlockView {
    fn from(block: Block) -> Self {
        Self {
            manual: block.is_manual(),
            prefix: block.prefix,
            reasons: block.reasons,
            codes: block.codes,
            created_at: block.created_at,
            renewed_at: block.renewed_at,
            expires_at: block.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    /// By prefix.
    blocks: Vec<BlockView>,
}

impl BlockList {
    pub fn new(blocks: Vec<Block>) -> Self {
        Self {
            blocks: blocks.into_iter().map(BlockView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// `+` and 1 to 15 digits: a range (`+447700900`) or a whole number.
    prefix: String,
    /// Why, in the admin's words (at most 200 characters), shown in the block's reason.
    note: Option<String>,
    /// How long the block lasts, 1 to 720 hours; without it, until lifted.
    #[schema(minimum = 1, maximum = 720)]
    hours: Option<i64>,
}

/// Every block in force: the guard's and the admins', with their reasons, the codes counted and
/// when each lifts.
#[utoipa::path(
    get,
    path = "/v1/fraud/blocks",
    operation_id = "list_fraud_blocks",
    tag = "fraud",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The blocks in force, by prefix", body = BlockList),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn list_blocks(
    State(services): State<Arc<Services>>,
    _admin: AdminClient,
) -> Result<Json<BlockList>, ApiError> {
    Ok(Json(BlockList::new(services.fraud_blocks().await?)))
}

/// Blocks a prefix by hand (reason `manual_block`), replacing any block it held; the guard
/// never overrides nor renews it. Effective on every instance within a second.
#[utoipa::path(
    post,
    path = "/v1/fraud/blocks",
    operation_id = "block_fraud_prefix",
    tag = "fraud",
    security(("api_key" = [])),
    request_body = BlockBody,
    responses(
        (status = 201, description = "Blocked", body = BlockView),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong: `invalid-prefix`, `invalid-note`, `invalid-block-period`",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn block(
    State(services): State<Arc<Services>>,
    admin: AdminClient,
    ApiJson(body): ApiJson<BlockBody>,
) -> Result<(StatusCode, Json<BlockView>), ApiError> {
    let prefix = parse_prefix("prefix", &body.prefix)?;
    let note = parse_note(body.note.as_deref())?;
    let period = body
        .hours
        .map(|hours| {
            BlockPeriod::hours(hours).map_err(|error| {
                ApiError::invalid_field("hours", "invalid-block-period", error.to_string())
            })
        })
        .transpose()?;
    let block = services
        .block_prefix(
            &admin.name,
            ManualBlock {
                prefix,
                note,
                period,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(BlockView::from(block))))
}

/// Lifts the block in force on exactly this prefix, the guard's or an admin's. The guard may
/// block the prefix again if the bad traffic goes on; a safe-list entry keeps it away.
#[utoipa::path(
    delete,
    path = "/v1/fraud/blocks/{prefix}",
    operation_id = "unblock_fraud_prefix",
    tag = "fraud",
    security(("api_key" = [])),
    params(("prefix" = String, Path, description = "The blocked prefix, as listed (`+447700900`; `%2B` for `+` also reads)")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = 404, description = "No block is in force on exactly this prefix",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Not a prefix (`invalid-prefix`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn unblock(
    State(services): State<Arc<Services>>,
    admin: AdminClient,
    Path(prefix): Path<String>,
) -> Result<StatusCode, ApiError> {
    let prefix = parse_prefix("prefix", &prefix)?;
    if services.unblock_prefix(&admin.name, &prefix).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no block is in force on exactly {prefix}"
        )))
    }
}

/// A safe-list entry: a range or a whole number the guard never blocks. Shown whole: the
/// admins wrote it, it is configuration rather than a user's number.
#[derive(Debug, Serialize, ToSchema)]
pub struct SafeEntryView {
    #[schema(value_type = String, example = "+15551234567")]
    prefix: Prefix,
    note: Option<String>,
    added_at: DateTime<Utc>,
}

impl From<SafeEntry> for SafeEntryView {
    fn from(entry: SafeEntry) -> Self {
        Self {
            prefix: entry.prefix,
            note: entry.note,
            added_at: entry.added_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SafeList {
    /// By prefix.
    entries: Vec<SafeEntryView>,
}

impl SafeList {
    pub fn new(entries: Vec<SafeEntry>) -> Self {
        Self {
            entries: entries.into_iter().map(SafeEntryView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeEntryBody {
    /// `+` and 1 to 15 digits: a range (`+4477009`) or a whole number (`+15551234567`).
    prefix: String,
    /// Why it is there (at most 200 characters).
    note: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SafeEntryParams {
    /// The entry to remove, exactly as listed; write the `+` as `%2B`.
    prefix: String,
}

/// The safe list: ranges and whole numbers the guard never blocks (the send limits still
/// apply to them).
#[utoipa::path(
    get,
    path = "/v1/fraud/safe-list",
    operation_id = "list_fraud_safe_list",
    tag = "fraud",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The safe list, by prefix", body = SafeList),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn list_safe(
    State(services): State<Arc<Services>>,
    _admin: AdminClient,
) -> Result<Json<SafeList>, ApiError> {
    Ok(Json(SafeList::new(services.fraud_safe_list().await?)))
}

/// Puts a range or a whole number on the safe list, or replaces the note of its entry.
/// Effective on every instance within a second; a block in force on it stays until lifted.
#[utoipa::path(
    post,
    path = "/v1/fraud/safe-list",
    operation_id = "add_fraud_safe_entry",
    tag = "fraud",
    security(("api_key" = [])),
    request_body = SafeEntryBody,
    responses(
        (status = 201, description = "On the safe list", body = SafeEntryView),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong: `invalid-prefix`, `invalid-note`",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn add_safe(
    State(services): State<Arc<Services>>,
    admin: AdminClient,
    ApiJson(body): ApiJson<SafeEntryBody>,
) -> Result<(StatusCode, Json<SafeEntryView>), ApiError> {
    let prefix = parse_prefix("prefix", &body.prefix)?;
    let note = parse_note(body.note.as_deref())?;
    let entry = services.add_safe_prefix(&admin.name, prefix, note).await?;
    Ok((StatusCode::CREATED, Json(SafeEntryView::from(entry))))
}

/// Takes an entry off the safe list, named by the query parameter `prefix` (a DELETE's body is
/// dropped by some proxies and clients, a query is not).
#[utoipa::path(
    delete,
    path = "/v1/fraud/safe-list",
    operation_id = "remove_fraud_safe_entry",
    tag = "fraud",
    security(("api_key" = [])),
    params(SafeEntryParams),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = 404, description = "Not on the safe list",
            body = ApiError, content_type = "application/problem+json"),
        (status = 422, description = "Not a prefix (`invalid-prefix`), or no `prefix` given",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn remove_safe(
    State(services): State<Arc<Services>>,
    admin: AdminClient,
    ApiQuery(params): ApiQuery<SafeEntryParams>,
) -> Result<StatusCode, ApiError> {
    let prefix = parse_query_prefix(&params.prefix)?;
    if services.remove_safe_prefix(&admin.name, &prefix).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "{prefix} is not on the safe list"
        )))
    }
}

/// One decision of the guard, as the log keeps it.
///
/// The number is shown as its 1,000-number range (`+447700900***`): that range is what the
/// guard judges and what an admin blocks or safe-lists, and a decision log is read, exported and
/// pasted into tickets; the last three digits never change what an admin does, so they are kept
/// out (unlike the `+1555***4567` of client views, whose masked middle is what an admin needs).
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    #[schema(value_type = String, format = Uuid)]
    id: Uuid,
    at: DateTime<Utc>,
    /// The number without its last three digits.
    #[schema(example = "+447700900***")]
    to: String,
    /// The API key's name.
    api_key: String,
    /// The client's IP address, when the caller gave it.
    client_ip: Option<String>,
    /// The calling service's id of its user (`POST /v1/verifications`'s `user_id`), when
    /// it gave one.
    user_id: Option<String>,
    /// Whether the calling service vouched for the user (`trusted`): the conversion policies
    /// did not judge the request.
    trusted: bool,
    /// The verification the request started or reused, when a code went.
    #[schema(value_type = Option<String>, format = Uuid)]
    verification_id: Option<VerificationId>,
    /// `{action, reasons: [{code, detail}]}`, as a verification's `risk`.
    risk: Decision,
}

impl From<LoggedDecision> for DecisionView {
    fn from(logged: LoggedDecision) -> Self {
        let range = Prefix::of(&logged.to, 3);
        let hidden = logged.to.as_str().len() - range.as_str().len();
        Self {
            id: logged.id,
            at: logged.at,
            to: format!("{range}{}", "*".repeat(hidden)),
            api_key: logged.api_key,
            client_ip: logged.client_ip,
            user_id: logged.user_id,
            trusted: logged.trusted,
            verification_id: logged.verification_id,
            risk: logged.decision,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionPage {
    decisions: Vec<DecisionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

impl DecisionPage {
    /// A page of at most `limit` decisions from `decisions`, read with a limit of `limit + 1`.
    pub fn new(mut decisions: Vec<LoggedDecision>, limit: u32) -> Self {
        let next_cursor = next_page(&mut decisions, limit, |decision| {
            encode_cursor(decision.at, decision.id)
        });
        Self {
            decisions: decisions.into_iter().map(DecisionView::from).collect(),
            next_cursor,
        }
    }
}

/// Reads a decision page's `next_cursor` (`GET /v1/fraud/decisions`).
pub fn decision_cursor(text: &str) -> Result<DecisionCursor, ApiError> {
    let (at, id) = decode_cursor(text)?;
    Ok(DecisionCursor { at, id })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecisionParams {
    /// Only decisions with this action: `allow`, `monitor` or `block`.
    action: Option<Action>,
    /// At or after (RFC 3339, or a period before now: `30m`, `24h`, `7d`).
    #[param(value_type = Option<String>)]
    since: Option<QueryTime>,
    /// Before (RFC 3339, or a period before now).
    #[param(value_type = Option<String>)]
    until: Option<QueryTime>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Decisions per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The guard's decision log, newest first, a page at a time: every block, and what monitored
/// policies would have done.
#[utoipa::path(
    get,
    path = "/v1/fraud/decisions",
    operation_id = "list_fraud_decisions",
    tag = "fraud",
    security(("api_key" = [])),
    params(DecisionParams),
    responses(
        (status = 200, description = "A page of decisions", body = DecisionPage),
        (status = 403, description = "Not an admin key (`admin-only`)",
            body = ApiError, content_type = "application/problem+json"),
        (status = "default", description = "An error, naming the parameter when one is wrong",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn list_decisions(
    State(services): State<Arc<Services>>,
    _admin: AdminClient,
    ApiQuery(params): ApiQuery<DecisionParams>,
) -> Result<Json<DecisionPage>, ApiError> {
    let limit = page_limit(params.limit, "decisions")?;
    let before = params.cursor.as_deref().map(decision_cursor).transpose()?;
    let now = services.now();
    let filter = DecisionFilter {
        action: params.action,
        since: params.since.map(|since| since.at(now)),
        until: params.until.map(|until| until.at(now)),
        before,
        // One more than the page, to know whether another page follows.
        limit: limit + 1,
    };
    let decisions = services.fraud_decisions(&filter).await?;
    Ok(Json(DecisionPage::new(decisions, limit)))
}

fn parse_prefix(field: &str, text: &str) -> Result<Prefix, ApiError> {
    Prefix::parse(text)
        .map_err(|error| ApiError::invalid_field(field, "invalid-prefix", error.to_string()))
}

/// A prefix in a query, where an unencoded `+` arrives as a space.
fn parse_query_prefix(text: &str) -> Result<Prefix, ApiError> {
    match text.strip_prefix(' ') {
        Some(rest) => parse_prefix("prefix", &format!("+{rest}")),
        None => parse_prefix("prefix", text),
    }
}

fn parse_note(text: Option<&str>) -> Result<Option<Note>, ApiError> {
    match text {
        Some(text) => Note::parse(text)
            .map_err(|error| ApiError::invalid_field("note", "invalid-note", error.to_string())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use domain::PhoneNumber;

    use super::*;

    #[test]
    fn a_decision_shows_the_numbers_range_and_never_its_last_three_digits() {
        let logged = LoggedDecision {
            id: Uuid::nil(),
            at: DateTime::UNIX_EPOCH,
            to: PhoneNumber::parse("+447700900123").unwrap(),
            api_key: "auth".into(),
            client_ip: None,
            user_id: None,
            trusted: false,
            verification_id: None,
            decision: Decision::allow(),
        };
        let json = serde_json::to_value(DecisionView::from(logged)).unwrap();
        assert_eq!(json["to"], "+447700900***");
        assert!(!json.to_string().contains("123"), "{json}");
        assert_eq!(
            json["risk"],
            serde_json::json!({"action": "allow", "reasons": []})
        );
    }

    #[test]
    fn a_prefix_in_a_query_reads_with_its_plus_encoded_or_not() {
        assert_eq!(
            parse_query_prefix(" 447700900").unwrap().as_str(),
            "+447700900"
        );
        assert_eq!(
            parse_query_prefix("+447700900").unwrap().as_str(),
            "+447700900"
        );
        let problem = parse_query_prefix("447700900").unwrap_err();
        assert_eq!(
            (problem.status, problem.kind, problem.field.as_deref()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-prefix",
                Some("prefix")
            )
        );
    }
}
