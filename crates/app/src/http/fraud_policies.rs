//! The fraud guard's policy modes at run time (`GET|PUT /v1/fraud/policies`, admin keys only):
//! an operator watches a policy before enforcing it, or turns one off during an incident,
//! without a restart; every instance goes by the change within a second.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::fraud::{Mode, Policies, Policy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiClient, ApiJson};
use super::ApiError;
use crate::Services;

/// Every policy's mode: `enforce` (it refuses codes), `monitor` (the code goes, what it found
/// is recorded) or `off`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyModes {
    /// Prefixes whose codes are checked and approved far less than their country's.
    #[schema(value_type = String, example = "enforce")]
    prefix_conversion: Mode,
    /// Prefixes getting far more codes than their share of their country's traffic.
    #[schema(value_type = String, example = "enforce")]
    prefix_surge: Mode,
    /// A country's codes far above their usual rate (the pumping alarm, `PUMPING_*`).
    #[schema(value_type = String, example = "enforce")]
    country_surge: Mode,
    /// Line types refused by `DENY_LINE_TYPES`.
    #[schema(value_type = String, example = "enforce")]
    line_type: Mode,
    /// Codes asked for too fast from one client address or range.
    #[schema(value_type = String, example = "enforce")]
    ip_velocity: Mode,
    /// Daily spend caps.
    #[schema(value_type = String, example = "enforce")]
    budget: Mode,
    /// Prefixes an admin blocked by hand.
    #[schema(value_type = String, example = "enforce")]
    manual_block: Mode,
}

impl From<Policies> for PolicyModes {
    fn from(policies: Policies) -> Self {
        Self {
            prefix_conversion: policies.mode(Policy::PrefixConversion),
            prefix_surge: policies.mode(Policy::PrefixSurge),
            country_surge: policies.mode(Policy::CountrySurge),
            line_type: policies.mode(Policy::LineType),
            ip_velocity: policies.mode(Policy::IpVelocity),
            budget: policies.mode(Policy::Budget),
            manual_block: policies.mode(Policy::ManualBlock),
        }
    }
}

/// The policies to change, each to `enforce`, `monitor` or `off`; those left out keep their
/// mode.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyModeChanges {
    #[schema(value_type = Option<String>, example = "monitor")]
    prefix_conversion: Option<Mode>,
    #[schema(value_type = Option<String>)]
    prefix_surge: Option<Mode>,
    #[schema(value_type = Option<String>)]
    country_surge: Option<Mode>,
    #[schema(value_type = Option<String>)]
    line_type: Option<Mode>,
    #[schema(value_type = Option<String>)]
    ip_velocity: Option<Mode>,
    #[schema(value_type = Option<String>)]
    budget: Option<Mode>,
    #[schema(value_type = Option<String>)]
    manual_block: Option<Mode>,
}

impl PolicyModeChanges {
    fn changes(&self) -> Vec<(Policy, Mode)> {
        [
            (Policy::PrefixConversion, self.prefix_conversion),
            (Policy::PrefixSurge, self.prefix_surge),
            (Policy::CountrySurge, self.country_surge),
            (Policy::LineType, self.line_type),
            (Policy::IpVelocity, self.ip_velocity),
            (Policy::Budget, self.budget),
            (Policy::ManualBlock, self.manual_block),
        ]
        .into_iter()
        .filter_map(|(policy, mode)| mode.map(|mode| (policy, mode)))
        .collect()
    }
}

/// The fraud guard's policies concern every client: an admin key's business only.
fn admin_only(client: &ApiClient) -> Result<(), ApiError> {
    if client.is_admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "admin-only",
        "Admin key required",
        "the fraud guard's policies are set with an admin key (ADMIN_API_KEYS)",
    ))
}

/// Every policy's mode in force: the configuration's (`FRAUD_MODE`, `FRAUD_POLICY_*`) with an
/// admin's changes over it.
#[utoipa::path(
    get,
    path = "/v1/fraud/policies",
    operation_id = "get_fraud_policies",
    tag = "fraud",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every policy's mode", body = PolicyModes),
        (status = "default", description = "An error; a key that is not an admin's is a 403",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn get(
    State(services): State<Arc<Services>>,
    client: ApiClient,
) -> Result<Json<PolicyModes>, ApiError> {
    admin_only(&client)?;
    Ok(Json(services.fraud_policies().await?.into()))
}

/// Changes policies' modes on every instance (within a second), until changed again; answers
/// every policy's mode now in force.
#[utoipa::path(
    put,
    path = "/v1/fraud/policies",
    operation_id = "set_fraud_policies",
    tag = "fraud",
    security(("api_key" = [])),
    request_body = PolicyModeChanges,
    responses(
        (status = 200, description = "Every policy's mode, the changes made", body = PolicyModes),
        (status = "default", description = "An error; an unknown policy or mode is a 422 naming \
            it, a key that is not an admin's a 403",
            body = ApiError, content_type = "application/problem+json")
    )
)]
pub async fn set(
    State(services): State<Arc<Services>>,
    client: ApiClient,
    ApiJson(body): ApiJson<PolicyModeChanges>,
) -> Result<Json<PolicyModes>, ApiError> {
    admin_only(&client)?;
    tracing::info!(admin = %client.name, "fraud policy modes changed");
    Ok(Json(
        services.set_fraud_policies(&body.changes()).await?.into(),
    ))
}
