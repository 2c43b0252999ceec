//! The database taken away under load, as an operator's failover or a crash would: a private
//! PostgreSQL cluster (its own `initdb`, on a free port, in a temporary directory; never the
//! machine's server) is stopped abruptly for ten seconds while the service binary takes
//! messages and sends them to a wiremock Twilio. Also the connection budget: the pool opens no
//! more than `DATABASE_POOL_SIZE`, and the startup log says what was chosen.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wiremock::matchers::{basic_auth, method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fake_twilio::{form_fields, messages_post, Recorder};
use crate::service::binary;
use crate::support::{ACCOUNT_SID, API_KEY, AUTH_TOKEN, FROM};
use crate::webhooks::twilio_signature;

const TO: &str = "+15551234567";
const PUBLIC_BASE_URL: &str = "https://notify.example.com";
const CALLBACK_URL: &str = "https://notify.example.com/v1/webhooks/twilio/status";
/// How long the database stays away.
const OUTAGE: Duration = Duration::from_secs(10);
/// The longest any answer may take while it is away.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// How soon after it returns requests succeed and dispatch resumes.
const RECOVER_WITHIN: Duration = Duration::from_secs(5);
/// Twilio's answer time: sends are in flight when the database stops.
const TWILIO_DELAY: Duration = Duration::from_millis(200);

/// A PostgreSQL cluster of the test's own, stopped (`-m immediate`) and its directory removed
/// when dropped, whether the test passed or not.
struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run as `postgres` (initdb refuses root).
    as_postgres: bool,
}

impl PrivateCluster {
    /// `None` when PostgreSQL's server binaries are not installed (a failure under `CI=true`).
    fn start() -> Option<Self> {
        let Some(bin) = server_binaries() else {
            let message = "initdb and pg_ctl not found under /usr/lib/postgresql/*/bin";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{message}: CI must run the outage test"
            );
            println!("SKIPPED: {message}; the outage test needs them");
            return None;
        };
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "sms-notify-outage-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        assert_ne!(port, 5432, "never the machine's own server");
        let cluster = Self {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            let owned = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(owned.success(), "cannot give the directory to postgres");
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.start_again();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=60",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// As a crash would: no checkpoint, every connection cut.
    fn stop_immediately(&self) -> bool {
        self.command(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .status()
        .is_ok_and(|status| status.success())
    }

    /// The clients connected now, this question's own connection left out.
    fn client_connections(&self) -> usize {
        let port = self.port.to_string();
        let output = self
            .command(
                "psql",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-Atc",
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                ],
            )
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        command
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's `bin` holding both `initdb` and `pg_ctl`.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("no free port")
        .port()
}

/// The service binary with its log (stdout) kept line by line; killed when dropped.
struct Instance {
    _child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    async fn start(env: &[(String, String)]) -> Self {
        let port = free_port();
        let mut child = Command::new(binary())
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start sms-notify-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let instance = Self {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", instance.base)).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return instance;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready: {:?}",
                instance.log_lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// The service's configuration for the cluster at `database_url`, JSON logs at `info`.
fn service_env(
    database_url: &str,
    twilio: &MockServer,
    overrides: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("CODE_PEPPER", "e2e-pepper-0123456789abcdef0123456789"),
        ("API_KEYS", &format!("auth:{API_KEY}")),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
        ("TWILIO_PHONE_NUMBER", FROM),
        ("TWILIO_API_BASE_URL", &twilio.uri()),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .chain(overrides)
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    // An override comes after the default it replaces: the last of a name wins.
    let mut seen = std::collections::HashSet::new();
    env.reverse();
    env.retain(|(name, _)| seen.insert(name.clone()));
    env
}

/// A Twilio whose account is active (readiness asks) and whose Messages API answers through
/// `recorder`.
async fn fake_twilio(recorder: &Recorder) -> MockServer {
    let twilio = MockServer::start().await;
    messages_post(form_fields(
        &[("To", TO), ("From", FROM), ("StatusCallback", CALLBACK_URL)],
        &["Body"],
    ))
    .respond_with(recorder.clone())
    .mount(&twilio)
    .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path(format!(
            "/2010-04-01/Accounts/{ACCOUNT_SID}.json"
        )))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"sid": ACCOUNT_SID, "status": "active"})),
        )
        .mount(&twilio)
        .await;
    twilio
}

/// Twilio's Message resource for any SID looked up: delivered.
struct Delivered;

impl Respond for Delivered {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let sid = request
            .url
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or_default()
            .trim_end_matches(".json")
            .to_owned();
        ResponseTemplate::new(200).set_body_json(json!({
            "sid": sid, "status": "delivered", "num_segments": "1", "price": "-0.00790",
            "price_unit": "USD", "error_code": null, "error_message": null
        }))
    }
}

/// One request of the load: when it started, how long its answer took, what it was.
#[derive(Debug, Clone)]
struct Answer {
    started: Instant,
    took: Duration,
    status: u16,
    problem: bool,
    retry_after: bool,
    body: String,
    /// The message's id, when accepted.
    id: Option<String>,
}

async fn post_message(client: &reqwest::Client, base: &str, body: &str) -> Answer {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(API_KEY)
        .json(&json!({"to": TO, "body": body}))
        .send()
        .await
        .expect("the service did not answer at all");
    let took = started.elapsed();
    let status = response.status().as_u16();
    let problem = response
        .headers()
        .get("content-type")
        .is_some_and(|value| value.as_bytes().starts_with(b"application/problem+json"));
    let retry_after = response.headers().contains_key("retry-after");
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    Answer {
        started,
        took,
        status,
        problem,
        retry_after,
        body: body.to_owned(),
        id: answer["id"].as_str().map(str::to_owned),
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(API_KEY).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the message shows `status`, asking every 20 ms; its last view.
async fn wait_for_status(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    status: &str,
    patience: Duration,
) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let (code, message) = get_json(client, &format!("{base}/v1/messages/{id}")).await;
        if code == 200 && message["status"] == status {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "message {id} never became {status}: {message}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_database_outage_under_load_loses_nothing_repeats_nothing_and_never_hangs() {
    // Built before the clock starts: the test's own time is what must stay short.
    let _ = binary();
    let test_started = Instant::now();
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let recorder = Recorder::new(TWILIO_DELAY);
    let twilio = fake_twilio(&recorder).await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM[0-9a-f]{{32}}\\.json$"
        )))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .respond_with(Delivered)
        .mount(&twilio)
        .await;
    let env = service_env(
        &cluster.url(),
        &twilio,
        &[
            ("DISPATCH_CONCURRENCY", "20"),
            // Shorter than the outage: a kept outcome lost would have its message claimed and
            // sent again once the database returns.
            ("DISPATCH_LEASE_SECONDS", "8"),
            ("RECONCILE_AFTER_SECONDS", "3"),
            ("RECONCILE_INTERVAL_SECONDS", "1"),
        ],
    );
    let service = Instance::start(&env).await;
    let base = service.base.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The load: three clients, each a message every 50 ms, until told to stop.
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let mut load = Vec::new();
    for client_number in 0..3 {
        let (client, base, answers, stopped) = (
            client.clone(),
            base.clone(),
            answers.clone(),
            load_stopped.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !*stopped.borrow() {
                let answer =
                    post_message(&client, &base, &format!("load {client_number}-{n}")).await;
                answers.lock().unwrap().push(answer);
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Readiness, probed as an orchestrator would.
    let probes = Arc::new(Mutex::new(Vec::<(Instant, Duration, u16)>::new()));
    let prober = {
        let (client, base, probes, stopped) = (
            client.clone(),
            base.clone(),
            probes.clone(),
            load_stopped.clone(),
        );
        tokio::spawn(async move {
            while !*stopped.borrow() {
                let started = Instant::now();
                let status = client
                    .get(format!("{base}/readyz"))
                    .send()
                    .await
                    .map_or(0, |response| response.status().as_u16());
                probes
                    .lock()
                    .unwrap()
                    .push((started, started.elapsed(), status));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    // A message whose status callback will come while the database is away.
    let target = post_message(&client, &base, "callback target").await;
    assert_eq!(target.status, 202);
    let target_id = target.id.expect("an accepted message has an id");
    let sent = wait_for_status(&client, &base, &target_id, "sent", Duration::from_secs(10)).await;
    let target_sid = sent["provider_sid"].as_str().unwrap().to_owned();

    assert!(cluster.stop_immediately(), "pg_ctl stop failed");
    let stopped_at = Instant::now();
    let log_at_stop = service.log_lines().len();

    // Twilio reports the target delivered; nothing can record it now.
    let params: Vec<(&str, String)> = vec![
        ("AccountSid", ACCOUNT_SID.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("From", FROM.to_owned()),
        ("MessageSid", target_sid.clone()),
        ("MessageStatus", "delivered".to_owned()),
        ("SmsSid", target_sid.clone()),
        ("SmsStatus", "delivered".to_owned()),
        ("To", TO.to_owned()),
    ];
    let pairs: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let callback_started = Instant::now();
    let callback = client
        .post(format!("{base}/v1/webhooks/twilio/status"))
        .header("X-Twilio-Signature", twilio_signature(CALLBACK_URL, &pairs))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(
        callback.status(),
        503,
        "a status callback during the outage"
    );
    assert!(callback_started.elapsed() < ANSWER_WITHIN);

    tokio::time::sleep_until((stopped_at + OUTAGE).into()).await;
    let log_during_outage: Vec<String> = service.log_lines()[log_at_stop..].to_vec();
    let restart_asked = Instant::now();
    tokio::task::block_in_place(|| cluster.start_again());
    let back_at = Instant::now();
    tokio::time::sleep(RECOVER_WITHIN + Duration::from_secs(3)).await;
    stop_load.send(true).unwrap();
    for task in load {
        task.await.unwrap();
    }
    prober.await.unwrap();
    let answers = answers.lock().unwrap().clone();
    let probes = probes.lock().unwrap().clone();

    // While it was away: every answer in time, a 503 problem document with Retry-After.
    // The slowest answers, should the limit be missed: how long, what, and when.
    let mut by_time: Vec<&Answer> = answers.iter().collect();
    by_time.sort_by_key(|a| std::cmp::Reverse(a.took));
    for answer in by_time.iter().take(3) {
        let at = answer.started.saturating_duration_since(stopped_at);
        let before = stopped_at.saturating_duration_since(answer.started);
        println!(
            "slow answer: {:?}, status {}, started {:?} after the stop ({:?} before it)",
            answer.took, answer.status, at, before
        );
    }
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(slowest < ANSWER_WITHIN, "an answer took {slowest:?}");
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.started > stopped_at && a.started + a.took < restart_asked)
        .collect();
    assert!(
        during.len() > 10,
        "only {} requests during the outage",
        during.len()
    );
    for answer in &during {
        assert!(
            answer.status == 503 && answer.problem && answer.retry_after,
            "during the outage: {answer:?}"
        );
    }
    let probes_during: Vec<_> = probes
        .iter()
        .filter(|(started, took, _)| *started > stopped_at && *started + *took < restart_asked)
        .collect();
    assert!(probes_during.len() > 5);
    for (_, took, status) in &probes_during {
        assert_eq!(*status, 503, "/readyz during the outage");
        assert!(*took < ANSWER_WITHIN, "/readyz took {took:?}");
    }
    assert!(probes.iter().all(|(_, took, _)| *took < ANSWER_WITHIN));

    // The dispatcher and the other background loops backed off instead of spinning.
    let failures_of = |what: &str| {
        log_during_outage
            .iter()
            .filter(|line| line.contains(what))
            .count()
    };
    let claim_failures = failures_of("cannot claim messages");
    for what in [
        "cannot claim messages",
        "cannot claim workflow steps",
        "cannot claim webhook deliveries",
        "cannot find the messages to reconcile",
    ] {
        let failures = failures_of(what);
        assert!(
            failures <= 12,
            "{failures} times `{what}` logged in a {OUTAGE:?} outage"
        );
    }

    // Back: within RECOVER_WITHIN every request succeeds.
    let after: Vec<&Answer> = answers.iter().filter(|a| a.started > back_at).collect();
    let first_success = after
        .iter()
        .find(|a| a.status == 202)
        .expect("no request succeeded after the database returned");
    assert!(
        first_success.started + first_success.took < back_at + RECOVER_WITHIN,
        "first success {:?} after the restart",
        first_success.started + first_success.took - back_at
    );
    for answer in after
        .iter()
        .filter(|a| a.started > back_at + RECOVER_WITHIN)
    {
        assert_eq!(
            answer.status, 202,
            "{RECOVER_WITHIN:?} after the restart: {answer:?}"
        );
    }

    // The sends that finished while it was away were kept, and written when it returned.
    let (_, metrics_text) = {
        let response = client.get(format!("{base}/metrics")).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let deferred: u64 = metrics_text
        .lines()
        .find_map(|line| line.strip_prefix("sms_notify_dispatch_outcomes_deferred_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        deferred > 0,
        "no send finished during the outage: the test proved nothing"
    );

    // Every message answered 202 reaches Twilio, and none twice.
    let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sends = loop {
        let mut sends: HashMap<String, Vec<Instant>> = HashMap::new();
        for (at, body) in recorder.arrivals() {
            sends.entry(body).or_default().push(at);
        }
        let missing = accepted
            .iter()
            .filter(|a| !sends.contains_key(&a.body))
            .count();
        if missing == 0 {
            break sends;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted messages never reached Twilio"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let twice: Vec<(&String, usize)> = sends
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(body, at)| (body, at.len()))
        .collect();
    if !twice.is_empty() {
        let log = service.log_lines();
        for (body, _) in &twice {
            let id = answers
                .iter()
                .find(|a| &a.body == *body)
                .and_then(|a| a.id.clone())
                .unwrap_or_default();
            let when: Vec<String> = sends[*body]
                .iter()
                .map(|at| format!("{:?}", at.saturating_duration_since(stopped_at)))
                .collect();
            println!("{body} ({id}) sent at stop + {when:?}; the log about it:");
            for line in log
                .iter()
                .filter(|line| !id.is_empty() && line.contains(&id))
            {
                println!("  {line}");
            }
        }
    }
    // Only a send in flight at the stop may go twice, and only one whose claim the crash
    // itself undid (claims commit asynchronously: the last moment's are lost with the server,
    // their messages queued again as after a lease): every other kept outcome was written.
    let log = service.log_lines();
    for (body, count) in &twice {
        let first = sends[*body].iter().min().unwrap();
        assert!(
            *first + Duration::from_secs(1) > stopped_at && *first < stopped_at,
            "{body} was sent twice but was not in flight at the stop"
        );
        assert_eq!(*count, 2, "{body}");
        let id = answers
            .iter()
            .find(|a| &a.body == *body)
            .and_then(|a| a.id.clone())
            .unwrap();
        assert!(
            log.iter().any(|line| line.contains(&id)
                && line.contains("claim lost before the kept outcome was written")),
            "{body} was sent again though its kept outcome could have been written"
        );
    }
    let resumed = sends
        .iter()
        .filter(|(body, _)| after.iter().any(|a| a.status == 202 && &a.body == *body))
        .flat_map(|(_, at)| at.iter().copied())
        .min()
        .expect("nothing accepted after the restart was sent");
    assert!(
        resumed < back_at + RECOVER_WITHIN,
        "dispatch resumed {:?} after the restart",
        resumed - back_at
    );

    // The callback refused during the outage is made good by the reconciler's lookup.
    let reconciled = wait_for_status(
        &client,
        &base,
        &target_id,
        "delivered",
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(reconciled["provider_sid"], target_sid.as_str());

    let slowest_during = during.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "outage test: {} requests ({} during the {OUTAGE:?} outage, slowest answer {slowest:?}, \
         {slowest_during:?} during it), \
         {} accepted and sent, {} twice, {deferred} outcomes kept through the outage, {claim_failures} \
         failed claims logged, first success {:?} and dispatch {:?} after the restart ({:?} to restart), \
         {:?} in all",
        answers.len(),
        during.len(),
        accepted.len(),
        twice.len(),
        first_success.started + first_success.took - back_at,
        resumed - back_at,
        back_at - restart_asked,
        test_started.elapsed(),
    );
}

/// Item 6 of issue 23: an instance opens at most `DATABASE_POOL_SIZE` connections, its
/// `LISTEN` included, however busy, and says at start what it chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_never_opens_more_than_database_pool_size_connections() {
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let twilio = fake_twilio(&Recorder::new(Duration::from_millis(20))).await;
    let env = service_env(&cluster.url(), &twilio, &[("DATABASE_POOL_SIZE", "4")]);
    let service = Instance::start(&env).await;
    let started = service
        .log_lines()
        .into_iter()
        .find(|line| line.contains("database ready"))
        .expect("no `database ready` line");
    assert!(started.contains("\"pool_size\":4"), "{started}");

    let client = reqwest::Client::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cluster = Arc::new(cluster);
    let sampler = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut most = 0;
            while !*stopped.borrow() {
                most = most.max(cluster.client_connections());
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    for round in 0..10 {
        let requests: Vec<_> = (0..40)
            .map(|n| {
                let (client, base) = (client.clone(), service.base.clone());
                tokio::spawn(async move {
                    post_message(&client, &base, &format!("busy {round}-{n}")).await
                })
            })
            .collect();
        for request in requests {
            let answer = request.await.unwrap();
            assert_eq!(answer.status, 202, "{answer:?}");
        }
    }
    stop.send(true).unwrap();
    let most = sampler.await.unwrap();
    assert!(
        most <= 4,
        "{most} connections open with DATABASE_POOL_SIZE=4"
    );
    assert!(most >= 2, "the LISTEN and at least one more: {most}");
    drop(service);
}
