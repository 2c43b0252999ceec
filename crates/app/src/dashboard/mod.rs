//! The operator's dashboard: server-rendered HTML pages under `/dashboard`, another inbound
//! adapter beside the HTTP API. Like the API's handlers, its pages reach the use cases only
//! through [`Services`] and hold no SQL.
//!
//! Only admin keys get in: the login form takes one and sets a signed session cookie
//! (`session`), every form that changes something carries the session's token, and every
//! answer forbids what the pages never need (`security_headers`): inline script and style,
//! anything from another origin, being framed. Styles, scripts and the chart library are
//! compiled into the binary (`assets`).

mod assets;
mod conversion;
mod fraud;
mod html;
mod messages;
mod overview;
mod providers;
mod session;
mod templates;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ports::StoreError;
use tower_http::timeout::TimeoutLayer;

use crate::Services;

/// Forms are a few fields; anything bigger is a mistake or an attack.
const BODY_LIMIT_BYTES: usize = 16 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every page allows: its own scripts, styles and requests, nothing inline, nothing from
/// elsewhere, no frame around it, forms posted only back here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `router` with the dashboard's routes.
pub fn mount(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.merge(routes())
}

fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/dashboard", get(overview::page))
        .route("/dashboard/overview.json", get(overview::figures_json))
        .route(
            "/dashboard/login",
            get(session::login_form).post(session::login),
        )
        .route("/dashboard/logout", post(session::logout))
        .route("/dashboard/messages", get(messages::search))
        .route("/dashboard/messages/{id}", get(messages::message))
        .route("/dashboard/verifications/{id}", get(messages::verification))
        .route("/dashboard/fraud", get(fraud::page))
        .route("/dashboard/fraud/block", post(fraud::block))
        .route("/dashboard/fraud/unblock", post(fraud::unblock))
        .route("/dashboard/fraud/safe", post(fraud::add_safe))
        .route("/dashboard/fraud/safe/remove", post(fraud::remove_safe))
        .route("/dashboard/fraud/policies", post(fraud::set_policies))
        .route("/dashboard/templates", get(templates::page))
        .route("/dashboard/templates/preview", get(templates::preview))
        .route("/dashboard/webhooks", get(webhooks::page))
        .route("/dashboard/conversion", get(conversion::page))
        .route("/dashboard/providers", get(providers::page))
        .route("/dashboard/assets/{version}/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

/// The CSP and its companions on every answer; pages (not assets) are never cached, as they
/// show one operator's view of the moment.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What a page answers instead of itself.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the form has expired: go back, reload the page and try again")]
    Forged,
    #[error("the database does not answer: try again in a moment")]
    Store(#[from] StoreError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            PageError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Not accepted"),
            PageError::Forged => (StatusCode::FORBIDDEN, "Form expired"),
            PageError::Store(error) => {
                tracing::warn!(%error, "a dashboard page could not read the store");
                (StatusCode::SERVICE_UNAVAILABLE, "Unavailable")
            }
        };
        let body = format!(
            r#"<p role="alert">{}</p><p><a href="/dashboard">Back to the overview</a></p>"#,
            html::esc(&self.to_string())
        );
        (status, Html(html::page(title, None, None, &[], &body))).into_response()
    }
}
