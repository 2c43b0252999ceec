//! The command line, as clap reads it. The help texts are the operator's manual: each says what
//! a command does and what it needs.

use std::path::PathBuf;

use app::http::{ConversionGroupBy, GroupBy};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand};
use domain::{Channel, MessageStatus, PhoneNumber};

/// Operator tool for sms-notify: runs the service, migrates and checks its setup, renders
/// templates, sends messages (one, or a CSV of them) and two-factor codes by hand, and reports
/// usage.
///
/// It reads the same environment variables as the service (DATABASE_URL, TWILIO_*, API_KEYS,
/// ...; see README.md) and works on the database directly, through the same code as the
/// service: no service needs to be running. With no configuration it uses the embedded SQLite
/// file under ./data/ and prints SMS to its log instead of sending them.
#[derive(Debug, Parser)]
#[command(
    name = "sms-notify",
    // `0.1.0 (database schema 19)`: the schema is the highest migration this binary applies
    // (see build.rs), which is what an operator compares with a database.
    version = env!("SMS_NOTIFY_VERSION"),
    max_term_width = 100,
    after_help = "Exit codes:\n  \
        0  done: sent, approved, canceled, shown\n  \
        1  a negative answer: a wrong code, a verification not approved or not found, a \
           message not found, a message that failed, no such fraud block or safe-list entry\n  \
        2  a mistake in the command, its input (a CSV file, a variable) or the configuration\n  \
        3  a dependency failed: the database (or the provider) cannot be reached; try again later"
)]
pub struct Cli {
    /// The API key name this tool acts as: messages and verifications belong to an API key, and
    /// `verify check` finds only those of its own key.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        default_value = "cli",
        env = "SMS_NOTIFY_API_KEY_NAME"
    )]
    pub api_key_name: String,

    /// Print one JSON document on stdout and nothing else there (for render, send, verify,
    /// messages, fraud, report and erase): the API's own document where it has one (the message of
    /// GET /v1/messages/{id}, the report of GET /v1/reports/usage). Errors still go to stderr.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service and its dispatcher: the same service as `sms-notify-server`, for
    /// deployments that ship one binary.
    Serve,

    /// Apply the database migrations to DATABASE_URL and name those that ran.
    ///
    /// The service also migrates when it starts; this lets a deployment migrate first.
    Migrate,

    /// Check every part of the deployment: the configuration, the database, its migrations
    /// (against the schema this binary expects), the templates, each provider's credentials,
    /// PUBLIC_BASE_URL's form and whether the webhook endpoints answer as this service. A table
    /// with a row per part, OK, WARN or FAIL, and under each warning and failure the fix.
    /// Exits 1 when something must be fixed.
    Check,

    /// Show what a template renders to: the text, its encoding (GSM-7 or UCS-2), its length,
    /// how many SMS segments it costs, and warnings.
    ///
    /// Example: sms-notify render two-factor-auth --data code=123456 --data expiryMinutes=10
    Render(RenderArgs),

    /// Send one message and follow it to its final status, or send a CSV file of them.
    ///
    /// One message: --to NUMBER with --template NAME (and --data KEY=VALUE for each variable)
    /// or --body TEXT. The message is stored, then sent by this process (a running service
    /// sharing the database may send it instead), and each change of status is printed.
    ///
    /// A CSV file: --csv FILE --template NAME. The first line names the columns: `to`, and one
    /// column per template variable; a column the template does not read is refused. Every row
    /// is checked first; if any is wrong, the bad rows are listed with their line numbers and
    /// nothing is sent (exit 2), as for a file with no rows. Progress is shown on a terminal,
    /// a summary line otherwise. Running the same file
    /// again sends nothing twice: each row's idempotency key comes from the template and the
    /// row's content, so only new or edited rows are sent.
    Send(SendArgs),

    /// Two-factor verification by hand: send a code, check a code, cancel a verification.
    #[command(subcommand)]
    Verify(VerifyCommand),

    /// This API key name's messages: one with its attempts, or a list, as the API shows them.
    #[command(subcommand)]
    Messages(MessagesCommand),

    /// The fraud guard by hand: the blocks in force (list), block and unblock a prefix, the
    /// safe list, the decision log. The same as the admin routes under /v1/fraud.
    #[command(subcommand)]
    Fraud(crate::fraud::FraudCommand),

    /// Usage over a recent period, as a table: a row per day, template, country, status or API
    /// key, with messages, segments, delivered, failed, delivery rate and cost per currency.
    /// `report conversion`: the verification funnel; `report fold`: the reports' rollups
    /// brought up to date now.
    Report(ReportArgs),

    /// Erase a phone number's data on its owner's request: every message, attempt, delivery
    /// report, verification (pending ones canceled first) and fraud decision to it, of every
    /// API key. Queued messages are never sent; the usage report keeps counting the messages
    /// (without the number). The same as DELETE /v1/numbers/{e164}. Prints what was erased.
    ///
    /// Example: sms-notify erase +15551234567
    Erase {
        /// The number, in E.164 (+15551234567).
        #[arg(value_name = "NUMBER", value_parser = phone_number)]
        number: PhoneNumber,
    },

    /// Print the HTTP API's OpenAPI description, as the service serves it at /openapi.json
    /// (keys sorted, so that it can be committed and diffed; `cargo xtask openapi` writes it to
    /// docs/openapi.json). Needs no configuration.
    Openapi,

    /// Print a completion script for a shell, to be sourced or installed where the shell looks:
    ///
    /// bash: sms-notify completions bash > /etc/bash_completion.d/sms-notify
    /// zsh:  sms-notify completions zsh > "${fpath[1]}/_sms-notify"
    /// fish: sms-notify completions fish > ~/.config/fish/completions/sms-notify.fish
    Completions {
        /// bash, zsh, fish (or elvish, powershell).
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) on stdout, or with --out-dir write it there with one page
    /// per command (sms-notify.1, sms-notify-send.1, ...).
    ///
    /// Example: sms-notify man > sms-notify.1 && man ./sms-notify.1
    Man {
        /// A directory to write sms-notify.1 and one page per command into; it must exist.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// One message, its status and every attempt to send it. Exits 1 when there is none of
    /// this API key name with this id.
    Show {
        /// The message's id.
        id: String,
    },

    /// Messages newest first, with the filters of GET /v1/messages.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only messages in this status (queued, sending, sent, delivered, failed, ...).
    #[arg(long, value_parser = message_status)]
    pub status: Option<MessageStatus>,

    /// Only messages to this number, in international format.
    #[arg(long, value_name = "NUMBER", value_parser = phone_number)]
    pub to: Option<PhoneNumber>,

    /// Only messages created at or after this instant (RFC 3339), or this long ago (7d, 24h).
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub since: Option<Instant>,

    /// Only messages created before this instant (RFC 3339), or this long ago (7d, 24h).
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub until: Option<Instant>,

    /// How many messages, 1 to 100.
    #[arg(long, default_value_t = app::http::DEFAULT_PAGE,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(app::http::MAX_PAGE)))]
    pub limit: u32,

    /// The next page: the `next_cursor` of an earlier list (--json prints it).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// A moment given on the command line: a date, or a period back from now.
#[derive(Debug, Clone, Copy)]
pub enum Instant {
    At(DateTime<Utc>),
    Ago(TimeDelta),
}

impl Instant {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Instant::At(at) => at,
            Instant::Ago(period) => now - period,
        }
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The template's name: a file TEMPLATES_DIR/NAME.hbs, or a built-in one.
    pub template: String,

    /// A template variable, KEY=VALUE; repeat for each variable. A key the template does not
    /// read is refused.
    #[arg(long = "data", value_name = "KEY=VALUE", value_parser = key_value)]
    pub data: Vec<(String, String)>,

    /// Render the template's variant for this locale (NAME.fr.hbs, then NAME.hbs).
    #[arg(long)]
    pub locale: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("content").required(true).args(["template", "body"])))]
pub struct SendArgs {
    /// The recipient, in international format (+15551234567).
    #[arg(long, value_name = "NUMBER", value_parser = phone_number, required_unless_present = "csv")]
    pub to: Option<PhoneNumber>,

    /// A CSV file of recipients: a column `to`, and the template's variables as the others.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "body", "data", "idempotency_key"], requires = "template")]
    pub csv: Option<PathBuf>,

    /// The template to render.
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,

    /// A template variable, KEY=VALUE; repeat for each variable. A key the template does not
    /// read is refused.
    #[arg(long = "data", value_name = "KEY=VALUE", value_parser = key_value, requires = "template")]
    pub data: Vec<(String, String)>,

    /// The text to send, instead of a template.
    #[arg(long, value_name = "TEXT", conflicts_with = "template")]
    pub body: Option<String>,

    /// `sms` or `whatsapp`.
    #[arg(long, default_value = "sms", value_parser = channel)]
    pub channel: Channel,

    /// Sends nothing if a message with this key was sent before (by this API key name).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// How long to follow the messages before leaving them to the service.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Start a verification (or send a new code for the pending one of this number) and follow
    /// its SMS until sent. Prints the verification's id for `verify check`.
    Start {
        /// The number to verify, in international format.
        #[arg(value_parser = phone_number)]
        number: PhoneNumber,

        /// `sms`, `whatsapp` or `voice` (a call that speaks the code).
        #[arg(long, default_value = "sms", value_parser = channel)]
        channel: Channel,

        /// Sends the code with the template's variant for this locale (two-factor-auth.fr.hbs).
        #[arg(long)]
        locale: Option<String>,

        #[command(flatten)]
        transaction: TransactionArgs,

        /// How long to follow the code's SMS.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },

    /// Check a code. Exits 0 when it approves the verification, 1 otherwise (a wrong code, no
    /// such verification, one that ended).
    Check {
        /// The verification's id, or the number of a pending verification.
        verification: String,

        /// The code the user received.
        code: String,

        #[command(flatten)]
        transaction: TransactionArgs,
    },

    /// Cancel a pending verification: none of its codes approves any more. Exits 1 when there
    /// is no such verification or it ended otherwise (approved, expired).
    Cancel {
        /// The verification's id.
        id: String,
    },
}

/// The payment a code confirms (PSD2): all three or none. Its text names them, and a check
/// approves only with the same three.
#[derive(Debug, Args)]
pub struct TransactionArgs {
    /// The amount paid, a decimal such as 49.90.
    #[arg(long, requires_all = ["currency", "payee"])]
    pub amount: Option<String>,

    /// The amount's ISO 4217 currency, such as EUR.
    #[arg(long, requires_all = ["amount", "payee"])]
    pub currency: Option<String>,

    /// Who is paid, as the payer reads it (1 to 20 characters).
    #[arg(long, requires_all = ["amount", "currency"])]
    pub payee: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,

    /// How far back: a number and a unit, d (days), h (hours) or m (minutes): 7d, 24h, 90m.
    #[arg(long, value_name = "PERIOD", default_value = "7d", value_parser = period)]
    pub since: TimeDelta,

    /// A row per day, template, country, status or api_key (name).
    #[arg(long, value_name = "GROUP", default_value = "day", value_parser = group_by)]
    pub group_by: GroupBy,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The verification funnel over a recent period, as GET /v1/reports/conversion reports it
    /// for an admin key: a row per group with verifications started, codes sent, approved,
    /// conversion rate, time to approve and to deliver (p50, p95) and cost per approved one.
    Conversion(ConversionArgs),

    /// Fold every hour that ended at least --settle ago (and holds nothing still queued or
    /// pending) into the reports' hourly rollups now, rather than waiting for the service's
    /// rollup job, and print how far they reach. Reports answer the same either way; folded
    /// hours are read faster.
    Fold(FoldArgs),
}

#[derive(Debug, Args)]
pub struct ConversionArgs {
    /// How far back: a number and a unit, d (days), h (hours) or m (minutes): 7d, 24h, 90m.
    #[arg(long, value_name = "PERIOD", default_value = "7d", value_parser = period)]
    pub since: TimeDelta,

    /// A row per day, country, channel, provider, prefix or api_key (name).
    #[arg(long, value_name = "GROUP", default_value = "day", value_parser = conversion_group_by)]
    pub group_by: ConversionGroupBy,
}

#[derive(Debug, Args)]
pub struct FoldArgs {
    /// Only hours that ended this long ago: a number and a unit, d, h or m (1m: every hour
    /// before the current one).
    #[arg(long, value_name = "PERIOD", default_value = "2h", value_parser = period)]
    pub settle: TimeDelta,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

fn phone_number(text: &str) -> Result<PhoneNumber, String> {
    PhoneNumber::parse(text).map_err(|error| error.to_string())
}

fn message_status(text: &str) -> Result<MessageStatus, String> {
    text.parse::<MessageStatus>()
        .map_err(|error| error.to_string())
}

fn conversion_group_by(text: &str) -> Result<ConversionGroupBy, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| "expected day, country, channel, provider, prefix or api_key".to_owned())
}

fn group_by(text: &str) -> Result<GroupBy, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| "expected day, template, country, status or api_key".to_owned())
}

pub(crate) fn instant(text: &str) -> Result<Instant, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Instant::At(at.with_timezone(&Utc)));
    }
    period(text)
        .map(Instant::Ago)
        .map_err(|_| "expected an RFC 3339 instant (2026-01-31T00:00:00Z) or a period (7d)".into())
}

fn channel(text: &str) -> Result<Channel, String> {
    text.parse::<Channel>().map_err(|error| error.to_string())
}

const LONGEST_PERIOD: TimeDelta = TimeDelta::days(36_525);

pub(crate) fn period(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("add a unit: d, h or m (7d, 24h, 90m)")?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number
        .parse()
        .map_err(|_| "expected a number and a unit, such as 7d")?;
    let delta = match unit {
        "d" => TimeDelta::try_days(number),
        "h" => TimeDelta::try_hours(number),
        "m" => TimeDelta::try_minutes(number),
        _ => return Err(format!("unknown unit `{unit}`: use d, h or m")),
    };
    // Bounded, so that now minus the period is a date.
    delta
        .filter(|delta| *delta > TimeDelta::zero() && *delta <= LONGEST_PERIOD)
        .ok_or_else(|| "expected a positive period of at most 100 years, such as 7d".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn periods_read_days_hours_and_minutes() {
        assert_eq!(period("7d"), Ok(TimeDelta::days(7)));
        assert_eq!(period("24h"), Ok(TimeDelta::hours(24)));
        assert_eq!(period("90m"), Ok(TimeDelta::minutes(90)));
        assert!(period("7").is_err());
        assert!(period("0d").is_err());
        assert!(period("7w").is_err());
        assert!(period("d").is_err());
    }

    #[test]
    fn a_period_reaching_past_the_representable_dates_is_refused() {
        assert_eq!(period("36525d"), Ok(TimeDelta::days(36_525)));
        for text in ["36526d", "100000000d", "9999999999h"] {
            assert!(period(text).is_err(), "{text}");
        }
    }

    #[test]
    fn data_pairs_keep_equals_signs_in_the_value() {
        assert_eq!(
            key_value("url=https://x.test/?a=b"),
            Ok(("url".into(), "https://x.test/?a=b".into()))
        );
        assert!(key_value("=value").is_err());
        assert!(key_value("novalue").is_err());
    }
}
