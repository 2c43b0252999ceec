//! README.md's examples, run as written against a default run: the curl walkthrough against the
//! service (`serve` with no configuration, on a free port instead of 8080), and the Operator CLI
//! section's commands against the embedded database with the console provider. Each runs in a
//! directory of its own holding a copy of the workspace's `templates/`, which is what `cargo run`
//! from the workspace's root sees. What the reader does by hand (`export KEY=...` from the
//! printed key, `ID` from an answer, `CODE` from the log, `orders.csv` from the file shown), the
//! tests do the same way; the commands run as they are written, so an edit of README.md that
//! breaks one fails here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const WALKTHROUGH: &str = "## Two-factor authentication from a terminal";
const OPERATOR_CLI: &str = "## Operator CLI";
/// How README.md writes a CLI command; the tests run the built binary in its place.
const CLI_PREFIX: &str = "cargo run -p cli -- ";
const PATIENCE: Duration = Duration::from_secs(30);
/// What precedes a one-time code in the console provider's log line.
const CODE_MARK: &str = "verification code is: ";

/// The section of README.md under `heading`, up to the next section.
fn section(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no `{heading}`"));
    let section = &readme[start + heading.len()..];
    section[..section.find("\n## ").unwrap_or(section.len())].to_owned()
}

/// The lines of the code blocks fenced as ```` ```language ```` in `section`.
fn code_lines(section: &str, language: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in section.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            inside = !inside && fence == language;
            continue;
        }
        if inside {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// A `curl` command of the walkthrough, continuation lines joined, and the answer README.md
/// shows for it (the `#` line that follows it).
#[derive(Debug)]
struct Request {
    command: String,
    shown: Option<String>,
}

fn walkthrough_requests() -> Vec<Request> {
    let mut requests: Vec<Request> = Vec::new();
    let mut current: Option<String> = None;
    for line in code_lines(&section(WALKTHROUGH), "sh") {
        match current.as_mut() {
            Some(command) => command.push_str(line.trim_start()),
            None if line.starts_with("curl ") => current = Some(line.clone()),
            None => {
                // The answer is the comment right after the command.
                if let Some(request) = requests.last_mut() {
                    if request.shown.is_none() && line.starts_with("# {") {
                        request.shown = Some(line.clone());
                    }
                }
                continue;
            }
        }
        if let Some(command) = current.as_mut() {
            if command.ends_with('\\') {
                command.pop();
            } else if let Some(command) = current.take() {
                requests.push(Request {
                    command,
                    shown: None,
                });
            }
        }
    }
    requests
}

/// The fields an answer shown in README.md states, at its top level: `"status":"approved"`.
/// What the reader cannot expect to match (`...` in a value, an elided list) is left out.
fn shown_fields(shown: &str) -> Vec<(String, Value)> {
    let (Some(start), Some(end)) = (shown.find('{'), shown.rfind('}')) else {
        return Vec::new();
    };
    let inner = &shown[start + 1..end];
    let mut pieces = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut piece_start) = (0, false, false, 0);
    for (index, c) in inner.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push(&inner[piece_start..index]);
                piece_start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[piece_start..]);
    pieces
        .into_iter()
        .filter_map(|piece| {
            let (name, value) = piece.split_once(':')?;
            let name: String = serde_json::from_str(name.trim()).ok()?;
            let value: Value = serde_json::from_str(value.trim()).ok()?;
            let elided = value.as_str().is_some_and(|text| text.contains("..."));
            (!elided).then_some((name, value))
        })
        .collect()
}

/// A directory as `cargo run` from the workspace's root sees it: the workspace's templates, no
/// database yet.
fn default_run_directory() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let templates = directory.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    let workspace_templates = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates"));
    for entry in std::fs::read_dir(workspace_templates).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, templates.join(path.file_name().unwrap())).unwrap();
    }
    directory
}

/// The one-time code in a console provider's log line.
fn code_in(line: &str) -> Option<String> {
    let start = line.find(CODE_MARK)? + CODE_MARK.len();
    Some(
        line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect(),
    )
}

/// The service, stopped when dropped; its stdout (the key line and the log) read line by line.
struct Service {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Service {
    fn start(directory: &Path, port: u16) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("sms-notify"))
            .arg("serve")
            .env_clear()
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .current_dir(directory)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first output line for which `find` answers, waiting for it.
    fn wait_for(&mut self, find: impl Fn(&str) -> Option<String>) -> String {
        if let Some(found) = self.seen.iter().find_map(|line| find(line)) {
            return found;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("not in the output:\n{}", self.seen.join("\n")));
            let found = find(&line);
            self.seen.push(line);
            if let Some(found) = found {
                return found;
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_readme_walkthrough_works_against_a_default_run() {
    let requests = walkthrough_requests();
    assert!(requests.len() >= 5, "{requests:?}");
    let directory = default_run_directory();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = Service::start(directory.path(), port);
    let key = service.wait_for(|line| line.strip_prefix("API key: ").map(str::to_owned));
    let mut id = String::new();
    let mut answers = Vec::new();

    for Request { command, shown } in &requests {
        let code = if command.contains("$CODE") {
            service.wait_for(code_in)
        } else {
            String::new()
        };
        let output = Command::new("sh")
            .arg("-c")
            .arg(command.replace("localhost:8080", &format!("127.0.0.1:{port}")))
            .env("KEY", &key)
            .env("ID", &id)
            .env("CODE", &code)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "`{command}` failed: {output:?}");
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("`{command}` answered {text}"));

        let shown = shown
            .as_deref()
            .unwrap_or_else(|| panic!("README.md shows no answer after `{command}`"));
        let fields = shown_fields(shown);
        assert!(!fields.is_empty(), "no field to compare in `{shown}`");
        for (name, value) in &fields {
            assert_eq!(
                answer.get(name),
                Some(value),
                "`{command}` answered {answer}, README.md shows `{shown}`"
            );
        }
        if !fields.iter().any(|(name, _)| name == "type") {
            assert!(
                answer.get("type").is_none(),
                "`{command}` answered a problem: {answer}"
            );
        }
        if let Some(new_id) = answer.get("id").and_then(Value::as_str) {
            id = new_id.to_owned();
        }
        answers.push(answer);
    }

    assert!(
        answers
            .iter()
            .any(|answer| answer["status"] == "approved" && answer["valid"] == true),
        "no approved check in {answers:?}"
    );
}

/// The Operator CLI section's commands, as written after `cargo run -p cli -- `, with their
/// comments.
fn cli_commands() -> Vec<String> {
    code_lines(&section(OPERATOR_CLI), "sh")
        .iter()
        .filter_map(|line| line.strip_prefix(CLI_PREFIX))
        .map(|command| {
            command[..command.find(" #").unwrap_or(command.len())]
                .trim()
                .to_owned()
        })
        .collect()
}

/// `command` with each of its words `placeholder` replaced by `value`, as the reader types it.
fn fill(command: &str, placeholder: &str, value: &str) -> String {
    command
        .split(' ')
        .map(|word| if word == placeholder { value } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `sms-notify` with `arguments` (shell words, as README.md writes them) in `directory`,
/// with no configuration at all: the test runner's `DATABASE_URL` must not leak in.
fn run_cli(directory: &Path, arguments: &str) -> Output {
    let binary = assert_cmd::cargo::cargo_bin("sms-notify");
    Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' {arguments}", binary.display()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(directory)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, command: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "`{command}` exited with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The word after `prefix` at the start of a line of `output`: `verification 0193...`.
fn printed_after(output: &[u8], prefix: &str) -> Option<String> {
    text(output)
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// What a CLI example exercises: its command, and subcommand where it has one.
fn kind(words: &[&str]) -> String {
    match words {
        ["send", "--csv", ..] => "send --csv".to_owned(),
        [group @ ("verify" | "messages"), subcommand, ..] => format!("{group} {subcommand}"),
        [command, ..] => (*command).to_owned(),
        [] => String::new(),
    }
}

#[test]
fn the_readme_cli_examples_run_as_written_against_the_default_run() {
    let commands = cli_commands();
    let csv_lines = code_lines(&section(OPERATOR_CLI), "csv");
    assert!(csv_lines.len() >= 2, "README.md shows no orders.csv");
    let rows = csv_lines.len() - 1;
    let directory = default_run_directory();
    let directory = directory.path();

    let verify_start = commands
        .iter()
        .find(|command| command.starts_with("verify start "))
        .expect("README.md shows `verify start`")
        .clone();
    let mut verification: Option<String> = None;
    let mut code: Option<String> = None;
    let mut message: Option<String> = None;
    let mut checked_templates = String::new();
    let mut covered = Vec::new();

    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let kind = kind(&words);
        covered.push(kind.clone());
        match (kind.as_str(), words.as_slice()) {
            // The service itself: the walkthrough above runs it, against curl.
            ("serve", _) => continue,
            ("send --csv", [_, _, file, ..]) => {
                std::fs::write(directory.join(file), csv_lines.join("\n") + "\n").unwrap();
            }
            ("verify check", [_, _, "ID", typed]) => {
                assert!(typed.chars().all(|c| c.is_ascii_digit()), "{command}");
                let id = verification
                    .as_deref()
                    .expect("a verification started before");
                let received = code.as_deref().expect("a code in the log");
                let filled = fill(&fill(command, "ID", id), typed, received);
                let checked = run_cli(directory, &filled);
                assert_exit(&checked, 0, &filled);
                assert!(text(&checked.stdout).contains("approved"), "{checked:?}");
                // Once approved, the same check is refused: exit 1, and never `approved`.
                let again = run_cli(directory, &filled);
                assert_exit(&again, 1, &filled);
                let again = text(&again.stdout);
                assert!(again.starts_with("refused"), "{again}");
                assert!(!again.contains("approved"), "{again}");
                continue;
            }
            ("verify cancel", [_, _, "ID"]) => {
                // A pending verification to cancel: the reader's `verify start` again (the one
                // checked above is approved, so this starts another).
                let started = run_cli(directory, &verify_start);
                assert_exit(&started, 0, &verify_start);
                let pending = printed_after(&started.stdout, "verification ").unwrap();
                let filled = fill(command, "ID", &pending);
                let canceled = run_cli(directory, &filled);
                assert_exit(&canceled, 0, &filled);
                assert!(text(&canceled.stdout).contains("canceled"), "{canceled:?}");
                continue;
            }
            ("messages show", [_, _, "ID"]) => {
                let id = message.as_deref().expect("a message sent before");
                let filled = fill(command, "ID", id);
                let shown = run_cli(directory, &filled);
                assert_exit(&shown, 0, &filled);
                assert!(text(&shown.stdout).contains(id), "{shown:?}");
                continue;
            }
            _ => {}
        }
        let output = run_cli(directory, command);
        assert_exit(&output, 0, command);
        let stdout = text(&output.stdout);
        match (kind.as_str(), words.as_slice()) {
            ("check", _) => checked_templates = stdout,
            ("render", [.., "--locale", locale]) => assert!(
                stdout.lines().any(|line| line.starts_with("template:")
                    && line.trim_end().ends_with(&format!(".{locale}"))),
                "`{command}` rendered no `{locale}` variant:\n{stdout}"
            ),
            ("send --csv", _) => assert!(
                stdout.contains(&format!("{rows} rows: {rows} messages queued now"))
                    && stdout.contains(&format!("{rows} sent")),
                "`{command}`:\n{stdout}"
            ),
            ("send", _) => message = printed_after(&output.stdout, "message "),
            // The examples above sent to the number and verified it: all of it goes.
            ("erase", _) => assert!(
                stdout.starts_with("erased +1555***4567: ")
                    && !stdout.contains(" 0 messages")
                    && !stdout.contains(" 0 verifications"),
                "`{command}`:\n{stdout}"
            ),
            ("verify start", _) => {
                verification = printed_after(&output.stdout, "verification ");
                code = text(&output.stderr).lines().find_map(code_in);
            }
            _ => {}
        }
    }

    let bulk_template = commands
        .iter()
        .filter(|command| command.starts_with("send --csv"))
        .find_map(|command| command.split_once("--template "))
        .and_then(|(_, name)| name.split_whitespace().next())
        .expect("README.md shows a bulk send");
    assert!(
        checked_templates
            .lines()
            .any(|line| line.contains("templates") && line.contains(bulk_template)),
        "`check` does not find the bulk example's template `{bulk_template}`:\n{checked_templates}"
    );
    for expected in [
        "check",
        "migrate",
        "render",
        "send",
        "send --csv",
        "verify start",
        "verify check",
        "verify cancel",
        "messages show",
        "messages list",
        "report",
        "erase",
    ] {
        assert!(
            covered.iter().any(|kind| kind == expected),
            "README.md shows no CLI example of `{expected}`: {covered:?}"
        );
    }
}

#[test]
fn a_shown_answer_states_its_plain_fields_and_leaves_out_the_elided_ones() {
    let fields = shown_fields(
        r#"# 202 {"id":"0193...","status":"pending","to":"+1555***4567","attempts":[...],"n":1,"detail":"a, b: c",...}"#,
    );
    assert_eq!(
        fields,
        [
            ("status".to_owned(), Value::from("pending")),
            ("to".to_owned(), Value::from("+1555***4567")),
            ("n".to_owned(), Value::from(1)),
            ("detail".to_owned(), Value::from("a, b: c")),
        ]
    );
}
