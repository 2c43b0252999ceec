//! `/v2/Services`: Twilio Verify's services of the authenticated account. A service holds its
//! friendly name and the code length its verifications use (the code message's wording is the
//! `two-factor-auth` template's: the name is not yet a variable of it). Settings for
//! what this service does not offer (Lookup, TOTP, push, passkeys, custom codes, ...) are
//! ignored and answered as off, so that the client sees what is in force; PSD2 is refused,
//! since its codes must carry the amount and payee, which no message here can.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use domain::CodeLength;
use ports::VerifyService;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::wire::{code, TwilioClient, TwilioError, TwilioForm};
use super::{base_url, parse_sid, sid, twilio_time};
use crate::usecases::verify_compat::{ServiceError, ServiceSettings};
use crate::Services;

/// A service as Twilio answers it (`verify.v2.service`).
#[derive(Debug, Serialize)]
pub struct ServiceResource {
    sid: String,
    account_sid: String,
    friendly_name: String,
    code_length: u8,
    lookup_enabled: bool,
    psd2_enabled: bool,
    skip_sms_to_landlines: bool,
    dtmf_input_required: bool,
    tts_name: Option<String>,
    /// The code message always says not to share the code.
    do_not_share_warning_enabled: bool,
    custom_code_enabled: bool,
    push: Value,
    totp: Value,
    default_template_sid: Option<String>,
    whatsapp: Value,
    passkeys: Value,
    verify_event_subscription_enabled: bool,
    date_created: String,
    date_updated: String,
    url: String,
    links: Value,
}

impl ServiceResource {
    fn new(service: &VerifyService, base: &str) -> Self {
        let url = format!("{base}/v2/Services/{}", sid("VA", service.id));
        Self {
            sid: sid("VA", service.id),
            account_sid: service.account_sid.clone(),
            friendly_name: service.friendly_name.clone(),
            code_length: service.code_length.digits(),
            lookup_enabled: false,
            psd2_enabled: false,
            skip_sms_to_landlines: false,
            dtmf_input_required: false,
            tts_name: None,
            do_not_share_warning_enabled: true,
            custom_code_enabled: false,
            push: json!({"include_date": false, "apn_credential_sid": null, "fcm_credential_sid": null}),
            totp: json!({"issuer": null, "time_step": null, "code_length": null, "skew": null}),
            default_template_sid: None,
            whatsapp: json!({"msg_service_sid": null, "from": null}),
            passkeys: json!({
                "relying_party": {"id": null, "name": null, "origins": []},
                "authenticator_attachment": null,
                "discoverable_credentials": null,
                "user_verification": null
            }),
            verify_event_subscription_enabled: false,
            date_created: twilio_time(service.created_at),
            date_updated: twilio_time(service.updated_at),
            links: json!({
                "verifications": format!("{url}/Verifications"),
                "verification_checks": format!("{url}/VerificationCheck"),
            }),
            url,
        }
    }
}

/// The settings a create or update request gives.
fn settings(form: &TwilioForm) -> Result<ServiceSettings, TwilioError> {
    if form.flag("Psd2Enabled")? == Some(true) {
        return Err(TwilioError::invalid_parameter(
            "Psd2Enabled",
            "PSD2 verifications are not offered by this service",
        ));
    }
    let code_length = form
        .integer("CodeLength")?
        .map(CodeLength::new)
        .transpose()
        .map_err(|error| TwilioError::invalid_parameter("CodeLength", error))?;
    Ok(ServiceSettings {
        friendly_name: form.get("FriendlyName").map(str::to_owned),
        code_length,
    })
}

fn service_error(error: ServiceError) -> TwilioError {
    match error {
        ServiceError::InvalidFriendlyName => TwilioError::invalid_parameter("FriendlyName", &error),
        ServiceError::Store(error) => error.into(),
    }
}

/// The account's service `sid`, or Twilio's 404 for the path asked.
pub(super) async fn service_of(
    services: &Services,
    client: &TwilioClient,
    service_sid: &str,
    path: &str,
) -> Result<VerifyService, TwilioError> {
    let Some(id) = parse_sid("VA", service_sid) else {
        return Err(TwilioError::not_found(path));
    };
    services
        .verify_service(&client.account_sid, id)
        .await?
        .ok_or_else(|| TwilioError::not_found(path))
}

/// `POST /v2/Services`.
pub async fn create(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    form: TwilioForm,
) -> Result<(StatusCode, Json<ServiceResource>), TwilioError> {
    let friendly_name = form.required("FriendlyName")?.to_owned();
    let settings = settings(&form)?;
    let service = services
        .create_verify_service(&client.account_sid, &friendly_name, settings.code_length)
        .await
        .map_err(service_error)?;
    let base = base_url(&services, &headers);
    Ok((
        StatusCode::CREATED,
        Json(ServiceResource::new(&service, &base)),
    ))
}

/// `GET /v2/Services/{Sid}`.
pub async fn fetch(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Path(service_sid): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<ServiceResource>, TwilioError> {
    let service = service_of(&services, &client, &service_sid, uri.path()).await?;
    Ok(Json(ServiceResource::new(
        &service,
        &base_url(&services, &headers),
    )))
}

/// `POST /v2/Services/{Sid}`: changes the settings given, keeps the rest.
pub async fn update(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Path(service_sid): Path<String>,
    uri: axum::http::Uri,
    form: TwilioForm,
) -> Result<Json<ServiceResource>, TwilioError> {
    let id = parse_sid("VA", &service_sid).ok_or_else(|| TwilioError::not_found(uri.path()))?;
    let service = services
        .update_verify_service(&client.account_sid, id, settings(&form)?)
        .await
        .map_err(service_error)?
        .ok_or_else(|| TwilioError::not_found(uri.path()))?;
    Ok(Json(ServiceResource::new(
        &service,
        &base_url(&services, &headers),
    )))
}

/// `DELETE /v2/Services/{Sid}`: the service goes; verifications started through it stay
/// checkable until they end, as they are the API key's.
pub async fn delete(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    Path(service_sid): Path<String>,
    uri: axum::http::Uri,
) -> Result<StatusCode, TwilioError> {
    let id = parse_sid("VA", &service_sid).ok_or_else(|| TwilioError::not_found(uri.path()))?;
    if services
        .delete_verify_service(&client.account_sid, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(TwilioError::not_found(uri.path()))
    }
}

/// Largest page Twilio serves.
const MAX_PAGE_SIZE: u32 = 1000;
const DEFAULT_PAGE_SIZE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct ListParams {
    #[serde(rename = "PageSize")]
    page_size: Option<String>,
    #[serde(rename = "Page")]
    page: Option<String>,
}

/// `GET /v2/Services`: a page of the account's services, oldest first, with Twilio's `meta`
/// (the SDKs follow `next_page_url`).
pub async fn list(
    State(services): State<Arc<Services>>,
    client: TwilioClient,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, TwilioError> {
    let number = |name: &str, value: Option<&String>, default: u32| -> Result<u32, TwilioError> {
        value.map_or(Ok(default), |text| {
            text.trim()
                .parse()
                .map_err(|_| TwilioError::invalid_parameter(name, "expected a whole number"))
        })
    };
    let page_size = number("PageSize", params.page_size.as_ref(), DEFAULT_PAGE_SIZE)?;
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(TwilioError::invalid_parameter(
            "PageSize",
            format!("expected 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    let page = number("Page", params.page.as_ref(), 0)?;
    let offset = page.checked_mul(page_size).ok_or_else(|| {
        TwilioError::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMETER,
            "Invalid parameter `Page`: too far",
        )
    })?;
    // One more than the page, to know whether another follows.
    let mut found = services
        .verify_services(&client.account_sid, offset, page_size + 1)
        .await?;
    let more = found.len() > page_size as usize;
    found.truncate(page_size as usize);

    let base = base_url(&services, &headers);
    let page_url = |page: u32| format!("{base}/v2/Services?PageSize={page_size}&Page={page}");
    Ok(Json(json!({
        "services": found
            .iter()
            .map(|service| ServiceResource::new(service, &base))
            .collect::<Vec<_>>(),
        "meta": {
            "page": page,
            "page_size": page_size,
            "first_page_url": page_url(0),
            "previous_page_url": page.checked_sub(1).map(page_url),
            "next_page_url": more.then(|| page_url(page + 1)),
            "key": "services",
            "url": page_url(page),
        }
    })))
}
