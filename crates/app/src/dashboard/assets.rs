//! The dashboard's styles, scripts and chart library, compiled into the binary so that nothing
//! is loaded from the internet. Their URLs carry a digest of their contents, so they are cached
//! for a year and a new build's are fetched anew.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

/// Each asset: its name, type and bytes. uPlot (MIT, its licence beside it) draws the charts.
const ASSETS: [(&str, &str, &[u8]); 9] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dashboard.css"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dashboard.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/overview.js"),
    ),
    (
        "conversion.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/conversion.js"),
    ),
    (
        "templates.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/templates.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("assets/uPlot.LICENSE"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// A year: the URL changes with the contents.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The digest in every asset's URL: of all of them, so one is enough.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    for (name, _, bytes) in ASSETS {
        digest.update(name.as_bytes());
        digest.update(bytes);
    }
    digest.finalize()[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
});

/// Where the page finds the asset `name`.
pub fn url(name: &str) -> String {
    format!("/dashboard/assets/{}/{name}", *VERSION)
}

pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(known, _, _)| *known == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // An old page's URL still gets today's file, but not for a year.
    let cache = if version == *VERSION {
        CACHE_CONTROL
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        *bytes,
    )
        .into_response()
}
