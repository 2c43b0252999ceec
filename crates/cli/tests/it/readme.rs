//! README.md's curl walkthrough, run as written against a default run of the service (`serve`
//! with no configuration, in an empty directory, on a free port instead of 8080). What the
//! reader does by hand (`export KEY=...` from the printed key, `ID` from an answer, `CODE` from
//! the log), the test does the same way; the `curl` commands run as they are.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

const SECTION: &str = "## Two-factor authentication in four requests";
const PATIENCE: Duration = Duration::from_secs(30);

/// The `curl` commands of the walkthrough, continuation lines joined, in order.
fn walkthrough_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find(SECTION).expect("README.md has the walkthrough");
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_code = false;
    let mut current: Option<String> = None;
    for line in section.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        match current.as_mut() {
            Some(command) => command.push_str(line.trim_start()),
            None if line.starts_with("curl ") => current = Some(line.to_owned()),
            None => continue,
        }
        if let Some(command) = current.as_mut() {
            if command.ends_with('\\') {
                command.pop();
            } else {
                commands.push(current.take().unwrap());
            }
        }
    }
    commands
}

/// The service, stopped when dropped; its stdout (the key line and the log) read line by line.
struct Service {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Service {
    fn start(directory: &std::path::Path, port: u16) -> Self {
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
    let commands = walkthrough_commands();
    assert!(commands.len() >= 4, "{commands:?}");
    let directory = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut service = Service::start(directory.path(), port);
    let key = service.wait_for(|line| line.strip_prefix("API key: ").map(str::to_owned));
    let mut id = String::new();
    let mut answers = Vec::new();

    for command in &commands {
        let code = if command.contains("$CODE") {
            service.wait_for(|line| {
                let start = line.find("verification code is: ")? + "verification code is: ".len();
                Some(
                    line[start..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect(),
                )
            })
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
        assert!(
            answer.get("type").is_none(),
            "`{command}` answered a problem: {answer}"
        );
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
