//! The dashboard pages beside the reports' figure: every page an operator opens, timed on the
//! history dataset the way a browser asks for it, with the session cookie the login form sets.
//! A page that reads raw rows in a way that grows with history shows here, not on the empty
//! database of the dashboard's tests.

use std::time::Instant;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Method, StatusCode};

use super::load::{self, Connection, Target};

/// Requests of each page; the median is the figure.
pub const PAGE_RUNS: usize = 3;

/// An operator's browser: one keep-alive connection and a session.
pub struct Operator {
    connection: Connection,
    session: String,
}

impl Operator {
    /// Logs in as an operator does: the login form (its token and the cookie it is bound to),
    /// then the admin key posted with them.
    pub async fn log_in(service: &Target, admin_key: &str) -> anyhow::Result<Self> {
        let mut connection = Connection::new(service);
        let (status, headers, body) = connection
            .exchange(Method::GET, "/dashboard/login", &[], String::new())
            .await?;
        if status != StatusCode::OK {
            bail!("GET /dashboard/login answered {status}");
        }
        let form_cookie = cookie(&headers, "dashboard_login")?;
        let form_token = form_token(&body)?;
        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &form_token)
            .append_pair("key", admin_key)
            .finish();
        let (status, headers, _) = connection
            .exchange(
                Method::POST,
                "/dashboard/login",
                &[
                    (header::COOKIE, form_cookie),
                    (
                        header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                ],
                form,
            )
            .await?;
        if !status.is_redirection() {
            bail!("POST /dashboard/login answered {status}, not the redirect of a session");
        }
        let session = cookie(&headers, "dashboard_session")?;
        Ok(Self {
            connection,
            session,
        })
    }

    /// The median time to open `path`, in milliseconds, following a redirect within the
    /// dashboard (the search by id answers one) as a browser does, its request counted in.
    pub async fn time_page(&mut self, path: &str) -> anyhow::Result<f64> {
        let mut times = Vec::with_capacity(PAGE_RUNS);
        for _ in 0..PAGE_RUNS {
            let started = Instant::now();
            let mut location = path.to_owned();
            let mut redirects = 0;
            loop {
                let (status, headers, body) = self.open(&location).await?;
                if status.is_success() {
                    break;
                }
                let next = headers
                    .get(header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .filter(|next| status.is_redirection() && next.starts_with("/dashboard"));
                match next {
                    // The login form would mean the session was refused: a failure.
                    Some(next) if redirects == 0 && next != "/dashboard/login" => {
                        location = next.to_owned();
                        redirects += 1;
                    }
                    _ => bail!(
                        "GET {location} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        Ok(load::quantile(&times, 0.5))
    }

    async fn open(&mut self, path: &str) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let cookie = (header::COOKIE, self.session.clone());
        self.connection
            .exchange(Method::GET, path, &[cookie], String::new())
            .await
    }
}

/// `name=value` of the cookie `name` the response sets.
fn cookie(headers: &HeaderMap, name: &str) -> anyhow::Result<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, value)| key == name && !value.is_empty())
        })
        .map(str::to_owned)
        .with_context(|| format!("the dashboard set no {name} cookie"))
}

/// The login form's token, from its hidden field.
fn form_token(page: &[u8]) -> anyhow::Result<String> {
    const FIELD: &str = r#"name="csrf" value=""#;
    let page = String::from_utf8_lossy(page);
    let start = page
        .find(FIELD)
        .context("the login form has no csrf field")?
        + FIELD.len();
    let token = page[start..]
        .split('"')
        .next()
        .context("the login form's csrf field is not closed")?;
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_forms_token_and_cookies_are_read_as_the_dashboard_writes_them() {
        let page = br#"<form><input type="hidden" name="csrf" value="ab12"><input id="key" name="key"></form>"#;
        assert_eq!(form_token(page).unwrap(), "ab12");
        assert!(form_token(b"<p>no form</p>").is_err());

        let mut headers = HeaderMap::new();
        for value in [
            "dashboard_session=tok; Path=/dashboard; HttpOnly",
            "dashboard_login=; Path=/dashboard; Max-Age=0",
        ] {
            headers.append(header::SET_COOKIE, value.parse().unwrap());
        }
        assert_eq!(
            cookie(&headers, "dashboard_session").unwrap(),
            "dashboard_session=tok"
        );
        assert!(cookie(&headers, "dashboard_login").is_err());
    }
}
