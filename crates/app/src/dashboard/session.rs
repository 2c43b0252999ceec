//! Logging in and out, and the extractor every other page takes: [`Operator`], the session its
//! cookie holds, or a redirect to the login form. The session itself (signing, expiry, form
//! tokens) is the use cases' (`usecases::operator_sessions`); here are the cookies.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::html::{self, esc, Header};
use super::PageError;
use crate::usecases::operator_sessions::{LoginRefusal, OperatorSession, SESSION_LIFETIME};
use crate::Services;

pub const SESSION_COOKIE: &str = "dashboard_session";
/// The login form's own value, which its token is bound to.
const LOGIN_COOKIE: &str = "dashboard_login";
/// Long enough to type a key in.
const LOGIN_FORM_SECONDS: i64 = 3_600;

/// An operator with a valid session.
pub struct Operator {
    pub session: OperatorSession,
    /// The token the pages' forms carry.
    pub form_token: String,
}

impl Operator {
    pub fn header(&self) -> Header<'_> {
        Header {
            operator: &self.session.name,
            form_token: &self.form_token,
        }
    }

    /// Refuses a form that does not carry this session's token.
    pub fn check_form(&self, presented: &str) -> Result<(), PageError> {
        if presented.is_empty() || presented.len() != self.form_token.len() {
            return Err(PageError::Forged);
        }
        if subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), self.form_token.as_bytes()).into() {
            Ok(())
        } else {
            Err(PageError::Forged)
        }
    }
}

impl FromRequestParts<Arc<Services>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|token| services.operator_session(token))
            .ok_or_else(|| Redirect::to("/dashboard/login").into_response())?;
        crate::usecases::request_context::record_api_key(&session.name, true);
        let form_token = services.operator_form_token(&session);
        Ok(Operator {
            session,
            form_token,
        })
    }
}

/// The value of the cookie `name`, if the request has it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A cookie for the dashboard's paths only, out of scripts' reach, never sent with a request
/// from another site, and only over https when the service is reached by https.
fn set_cookie(services: &Services, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if services.serves_https() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/dashboard; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn login_page(services: &Services, status: StatusCode, problem: Option<&str>) -> Response {
    let (nonce, token) = services.login_form();
    let alert = problem
        .map(|problem| {
            format!(
                r#"<p class="alert" role="alert" id="login-problem">{}</p>"#,
                esc(problem)
            )
        })
        .unwrap_or_default();
    let described = if problem.is_some() {
        r#" aria-describedby="login-problem" aria-invalid="true""#
    } else {
        ""
    };
    let body = format!(
        r#"{alert}<form class="login" method="post" action="/dashboard/login">
<input type="hidden" name="csrf" value="{token}">
<label for="key">Admin API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus{described}>
<button type="submit">Log in</button>
</form>
<p class="hint">An admin key is one of <code>ADMIN_API_KEYS</code>. A session lasts {hours} hours.</p>"#,
        token = esc(&token),
        hours = SESSION_LIFETIME.num_hours()
    );
    let mut response = (status, Html(html::page("Log in", None, None, &[], &body))).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(services, LOGIN_COOKIE, &nonce, LOGIN_FORM_SECONDS),
    );
    response
}

pub async fn login_form(State(services): State<Arc<Services>>, headers: HeaderMap) -> Response {
    // Already in: straight to the overview.
    if cookie(&headers, SESSION_COOKIE)
        .is_some_and(|token| services.operator_session(token).is_some())
    {
        return Redirect::to("/dashboard").into_response();
    }
    login_page(&services, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let from_this_form = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|nonce| services.login_form_holds(nonce, &form.csrf));
    if !from_this_form {
        return login_page(
            &services,
            StatusCode::FORBIDDEN,
            Some("The form has expired: enter the key again."),
        );
    }
    match services.open_operator_session(&form.key) {
        Ok((_, token)) => {
            // The token's own expiry is the same lifetime from now.
            let seconds = SESSION_LIFETIME.num_seconds();
            let mut response = Redirect::to("/dashboard").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(&services, SESSION_COOKIE, &token, seconds),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(&services, LOGIN_COOKIE, "", 0),
            );
            response
        }
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "dashboard login refused");
            let status = match refusal {
                LoginRefusal::UnknownKey => StatusCode::UNAUTHORIZED,
                LoginRefusal::NotAdmin => StatusCode::FORBIDDEN,
            };
            login_page(&services, status, Some(&refusal.to_string()))
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(services): State<Arc<Services>>,
    operator: Operator,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    operator.check_form(&form.csrf)?;
    let mut response = Redirect::to("/dashboard/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&services, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}
