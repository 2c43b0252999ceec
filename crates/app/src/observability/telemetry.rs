//! Logging setup: readable lines in development, JSON for log pipelines in production; colours
//! only for a person at a terminal, so that a saved log can be searched. The same spans feed
//! the trace exporter when traces are on (`traces`).

use std::ffi::OsStr;
use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Level;
use tracing_subscriber::filter::{Directive, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::wiring::config::LogFormat;

/// The target of the line that shows the default run's API key: let through whatever
/// `RUST_LOG` says, since the operator cannot call the API without it.
pub const API_KEY_TARGET: &str = "sms_notify::api_key";

/// Who reads the log, which decides where it goes and how much it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The service's log, on stdout: `info` and up.
    Service,
    /// An operator command's, on stderr so that stdout carries only results: quiet but for the
    /// console provider's lines (without Twilio, they are how a code or message is seen), and
    /// without times, which a person at a terminal does not need.
    Operator,
}

/// Installs the global subscriber for the service, feeding `tracer` (the OTLP exporter's,
/// when traces are on: [`super::traces::Traces::start`]) the spans of this crate. `RUST_LOG`
/// overrides the log's default level, not what is traced.
pub fn init(format: LogFormat, tracer: Option<SdkTracer>) {
    install(format, Audience::Service, tracer);
}

/// Installs the global subscriber for `audience`. `RUST_LOG` overrides the default level.
pub fn init_for(format: LogFormat, audience: Audience) {
    install(format, audience, None);
}

fn install(format: LogFormat, audience: Audience, tracer: Option<SdkTracer>) {
    let (default_filter, is_terminal, writer) = match audience {
        Audience::Service => (
            "info,sqlx=warn,tower_http=info",
            std::io::stdout().is_terminal(),
            BoxMakeWriter::new(std::io::stdout),
        ),
        Audience::Operator => (
            "warn,app::providers::console=info",
            std::io::stderr().is_terminal(),
            BoxMakeWriter::new(std::io::stderr),
        ),
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter))
        .add_directive(api_key_directive());
    let colours = colours(is_terminal, std::env::var_os("NO_COLOR").as_deref());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colours);
    let lines = match (format, audience) {
        // The request's span (its id, API key name, route) once per line: the list of enclosing
        // spans would repeat it, doubling every line.
        (LogFormat::Json, _) => lines
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .boxed(),
        (LogFormat::Pretty, Audience::Service) => lines.compact().boxed(),
        (LogFormat::Pretty, Audience::Operator) => lines.compact().without_time().boxed(),
    };
    // Traced apart from the log's level: this crate's spans (requests, sends, provider calls,
    // callbacks, webhook deliveries), not the libraries' below them.
    let traced = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("app", Level::INFO))
    });
    // `try_init` so that a second call (tests, the CLI) is harmless.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traced)
        .try_init();
}

/// Whether log lines are coloured: only for a terminal, and never with `NO_COLOR` set to
/// anything but the empty string (<https://no-color.org>).
pub fn colours(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

fn api_key_directive() -> Directive {
    format!("{API_KEY_TARGET}=info")
        .parse()
        .unwrap_or_else(|_| unreachable!("a target and a level are a directive"))
}

/// Shows the default run's API key at start: a plain `API key: <key>` line to copy, or with
/// `LOG_FORMAT=json` a log line like every other, its message the same and the key in a field
/// of its own (`api_key`), so that a pipeline reading JSON is not broken by it.
pub fn show_api_key(format: LogFormat, key: &str) {
    match format {
        LogFormat::Pretty => println!("API key: {key}"),
        LogFormat::Json => tracing::info!(target: API_KEY_TARGET, api_key = key, "API key: {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_and_never_with_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
        assert!(!colours(false, Some(OsStr::new("1"))));
    }
}
