//! The sms-notify service: what `cargo run` starts. Configuration comes from the environment
//! (see README.md); with none, it runs on an embedded SQLite file and prints SMS to the log.

use std::process::ExitCode;

// jemalloc rather than glibc's malloc: the service allocates and frees across its worker
// threads all the time, and glibc's arenas spent a large share of its CPU on that; mimalloc
// spent as little but held much more memory idle (docs/performance.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "\
sms-notify-server: the sms-notify service (HTTP API, dispatcher, status callbacks)

usage: sms-notify-server [--help | --version]

All configuration is environment variables (README.md, Configuration): DATABASE_URL,
BIND_ADDR, API_KEYS, ADMIN_API_KEYS, TWILIO_ACCOUNT_SID, ... With none, the service runs on
an embedded SQLite file under ./data/ and prints each SMS to its log. Traces are exported
over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (README.md, Tracing).

exit status: 0 after a graceful shutdown (SIGTERM, ctrl-c); 2 for a bad or missing setting
(one line naming the variable); 3 when the database cannot be reached (one line with its cause
and the URL without its password); 1 when the service stops on another error.
";

#[tokio::main]
async fn main() -> ExitCode {
    // Arguments are only these; anything else starting the service would surprise an operator
    // who meant to ask what it does.
    if let Some(argument) = std::env::args().nth(1) {
        match argument.as_str() {
            "--help" | "-h" => print!("{USAGE}"),
            "--version" | "-V" => println!("sms-notify-server {}", env!("CARGO_PKG_VERSION")),
            other => {
                eprintln!("error: unexpected argument `{other}` (see --help)");
                return ExitCode::from(2);
            }
        }
        return ExitCode::SUCCESS;
    }
    // Every failure is one line on stderr, never a chain or a backtrace (whatever
    // RUST_BACKTRACE says): an operator reads it in a crash-looping pod's last line.
    let config = match app::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let (traces, tracer) = match app::observability::traces::Traces::start(&config.traces) {
        Ok(started) => started,
        Err(problem) => {
            eprintln!("invalid configuration: {problem}");
            return ExitCode::from(2);
        }
    };
    app::observability::telemetry::init(config.log_format, tracer);
    let served = app::wiring::server::serve(config).await;
    // The spans of the last requests and sends, exported before the process ends.
    traces.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let doing = match error {
                app::wiring::server::StartupError::Serve(_) => "the service stopped",
                _ => "cannot start",
            };
            eprintln!("{doing}: {}", app::wiring::server::one_line(&error));
            ExitCode::from(error.exit_code())
        }
    }
}
