//! Logging setup: readable lines in development, JSON for log pipelines in production.

use tracing_subscriber::EnvFilter;

use crate::wiring::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` so that a second call (tests, the CLI) is harmless.
    let _ = match format {
        // The request's span (its id, API key name, route) once per line: the list of enclosing
        // spans would repeat it, doubling every line.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
