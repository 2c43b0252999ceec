//! The steps of `cargo xtask test`, `lint` and `bench`, run in order from the workspace root,
//! each announced by a header line and timed, stopping at the first that fails.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::postgres;

enum Step {
    PostgresReachable,
    /// Schemathesis against the served API, with this many examples per operation.
    ApiFuzz {
        examples: u32,
    },
    /// The TypeScript client against a live service (`crate::typescript`).
    Typescript,
    /// The AFL++ targets (`crate::fuzz`) for this many seconds each, when cargo-afl is there.
    Fuzz {
        seconds: u64,
    },
    Cargo {
        args: Vec<String>,
        /// What to do about a failure, when there is more to say than "see above".
        hint: Option<&'static str>,
    },
    /// The benchmark (`crate::bench`).
    Bench(crate::bench::Options),
    /// The fraud guard's simulation, its short run (`crate::fraud_sim`).
    FraudSim,
    /// The tests proper. Their runner reports its own time, and its summary must stay the
    /// closing line that CI reads, so nothing is printed after it.
    TestRunner {
        args: Vec<String>,
    },
}

/// Examples per operation in `cargo xtask test`: enough to exercise every route and its
/// errors in seconds.
const TEST_API_FUZZ_EXAMPLES: u32 = 25;
/// Seconds per fuzz target in `cargo xtask test`: a smoke run that the targets still build and
/// that their seeds and first mutations pass; the long runs are `cargo xtask fuzz`.
const TEST_FUZZ_SECONDS: u64 = 10;

/// Which of the optional checks `cargo xtask test` runs.
pub(crate) struct Checks {
    pub(crate) lint: bool,
    pub(crate) api_fuzz: bool,
    pub(crate) fuzz: bool,
    pub(crate) typescript: bool,
}

/// Every check, in order. `runner_args` go to the test runner.
pub(crate) fn test(checks: Checks, runner_args: &[String]) -> anyhow::Result<()> {
    let Checks {
        lint,
        api_fuzz,
        fuzz,
        typescript,
    } = checks;
    let mut steps = vec![Step::PostgresReachable];
    if lint {
        steps.extend(lint_steps());
    }
    // Before the tests rather than after: the test runner's summary must stay the last line.
    if api_fuzz {
        steps.push(Step::ApiFuzz {
            examples: TEST_API_FUZZ_EXAMPLES,
        });
    }
    // Before the tests too; skipped, like the fuzz, by a run narrowed to a few tests.
    if typescript && runner_args.is_empty() {
        steps.push(Step::Typescript);
    }
    // So that the fuzz targets and the benchmark never rot; before the tests, whose summary must
    // come last. A run narrowed by runner arguments is someone iterating on a few tests: it
    // skips them.
    if fuzz && runner_args.is_empty() {
        steps.push(Step::Fuzz {
            seconds: TEST_FUZZ_SECONDS,
        });
    }
    if runner_args.is_empty() {
        steps.push(Step::Bench(crate::bench::Options {
            quick: true,
            only: None,
            soak_minutes: None,
        }));
        steps.push(Step::FraudSim);
    }
    if has_nextest() {
        // No crate has doc examples; if one ever does, run `cargo test --doc` here too, as
        // nextest does not.
        steps.push(test_runner(
            &["nextest", "run", "--workspace", "--all-features"],
            runner_args,
        ));
    } else {
        steps.push(test_runner(
            &["test", "--workspace", "--all-features"],
            runner_args,
        ));
    }
    run(&steps, &postgres::database_url())
}

/// The benchmark's figures, in `target/bench/report.md` and `report.json`.
pub(crate) fn bench(options: crate::bench::Options) -> anyhow::Result<()> {
    run(
        &[Step::PostgresReachable, Step::Bench(options)],
        &postgres::database_url(),
    )
}

/// Formatting and clippy only.
pub(crate) fn lint() -> anyhow::Result<()> {
    run(&lint_steps(), &postgres::database_url())
}

fn lint_steps() -> Vec<Step> {
    vec![
        cargo(
            &["fmt", "--all", "--check"],
            &[],
            Some("run `cargo fmt --all` to format the workspace"),
        ),
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            &[],
            None,
        ),
    ]
}

fn cargo(args: &[&str], extra_args: &[String], hint: Option<&'static str>) -> Step {
    Step::Cargo {
        args: command_args(args, extra_args),
        hint,
    }
}

fn test_runner(args: &[&str], runner_args: &[String]) -> Step {
    Step::TestRunner {
        args: command_args(args, runner_args),
    }
}

fn command_args(args: &[&str], extra_args: &[String]) -> Vec<String> {
    args.iter()
        .map(ToString::to_string)
        .chain(extra_args.iter().cloned())
        .collect()
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `steps` in order; every cargo command sees `database_url` as `DATABASE_URL`.
fn run(steps: &[Step], database_url: &str) -> anyhow::Result<()> {
    for (index, step) in steps.iter().enumerate() {
        let started = Instant::now();
        let number = format!("[{}/{}]", index + 1, steps.len());
        match step {
            Step::PostgresReachable => {
                match postgres::tcp_address(database_url)? {
                    Some(address) => {
                        eprintln!("==> {number} PostgreSQL reachable at {address}");
                        postgres::check_reachable(&address)?;
                    }
                    None => {
                        eprintln!("==> {number} PostgreSQL reachable: skipped, no TCP host in DATABASE_URL");
                    }
                }
            }
            Step::ApiFuzz { examples } => {
                eprintln!("==> {number} api-fuzz: schemathesis, {examples} examples per operation");
                crate::api_fuzz::run(*examples)?;
            }
            Step::Typescript => {
                eprintln!("==> {number} typescript: the client in clients/typescript against a live service");
                crate::typescript::run()?;
            }
            Step::Fuzz { seconds } => {
                if !crate::fuzz::installed() {
                    eprintln!(
                        "==> {number} fuzz: cargo-afl not installed, skipped ({})",
                        crate::fuzz::INSTALL_HINT
                    );
                    continue;
                }
                eprintln!("==> {number} fuzz: AFL++, {seconds}s per target");
                crate::fuzz::run(*seconds, None)?;
            }
            Step::Cargo { args, hint } => {
                eprintln!("==> {number} cargo {}", args.join(" "));
                run_cargo(args, database_url, *hint)?;
            }
            Step::Bench(options) => {
                let kind = if options.quick { " --quick" } else { "" };
                eprintln!("==> {number} bench{kind}");
                crate::bench::run(*options)?;
            }
            Step::FraudSim => {
                eprintln!("==> {number} fraud-sim --short: the fraud guard's targets asserted");
                crate::fraud_sim::short()?;
            }
            Step::TestRunner { args } => {
                eprintln!("==> {number} cargo {}", args.join(" "));
                if let Some(missing) = missing_browser() {
                    // Under CI the tests fail instead: `.ci/run` installs both.
                    eprintln!(
                        "    browser tests skipped: {missing} not installed \
                         (apt-get install chromium chromium-driver)"
                    );
                }
                run_cargo(args, database_url, None)?;
                continue; // see `Step::TestRunner`
            }
        }
        eprintln!("    ok in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// What the dashboard's browser tests lack to run, when not under CI (where they must run and
/// fail without it): `chromium` or `chromedriver`, which they then skip, each saying so.
fn missing_browser() -> Option<&'static str> {
    if std::env::var("CI").as_deref() == Ok("true") {
        return None;
    }
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        })
    };
    if !on_path("chromium") && !on_path("chromium-browser") {
        Some("chromium")
    } else if !on_path("chromedriver") {
        Some("chromedriver")
    } else {
        None
    }
}

fn run_cargo(args: &[String], database_url: &str, hint: Option<&str>) -> anyhow::Result<()> {
    let command_line = format!("cargo {}", args.join(" "));
    let status = Command::new("cargo")
        .args(args)
        .current_dir(crate::workspace_root())
        .env("DATABASE_URL", database_url)
        .status()
        .with_context(|| format!("could not start `{command_line}`"))?;
    if !status.success() {
        match hint {
            Some(hint) => bail!("`{command_line}` failed ({status}): {hint}"),
            None => bail!("`{command_line}` failed ({status}), see above"),
        }
    }
    Ok(())
}
