//! Developer workflows for sms-notify, run as `cargo xtask <command>` (an alias in
//! `.cargo/config.toml`).
//!
//! `cargo xtask test` is the one command that runs every check, the same way on a laptop and in
//! CI: `.ci/run` only installs what a fresh machine lacks and then calls it. The tidy checks
//! (crate docs, the dependency rule, no `dbg!`) are ordinary tests of this crate in `tidy.rs`,
//! so that command runs them too.
//!
//! This crate depends on no workspace crate, so it still builds when the others do not.

mod api_fuzz;
mod bench;
mod fraud_sim;
mod fuzz;
mod openapi;
mod postgres;
mod steps;
#[cfg(test)]
mod tidy;
mod typescript;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--no-lint] [--no-api-fuzz] [--no-fuzz] [--no-typescript] [-- <args>...]
                                   run every check: PostgreSQL reachable, fmt, clippy, a short
                                   api-fuzz, the TypeScript client against a live service, a
                                   short fuzz when cargo-afl is installed, bench --quick, the
                                   fraud simulation's short run, the tests (--no-lint skips
                                   fmt and clippy, --no-api-fuzz and --no-fuzz the fuzzing,
                                   --no-typescript the client; <args> go to the test runner,
                                   and skip the client, the fuzz, the bench and the
                                   simulation)
  lint                             check formatting and run clippy with warnings denied
  bench [--quick] [--only <N>] [--soak <MINUTES>]
                                   run the benchmarks (release build, local PostgreSQL and SQLite)
                                   and write target/bench/report.md and report.json
                                   (--quick: a smoke run of a few minutes on the debug build;
                                   --only: the scenarios of figure N, 1 to 13, when
                                   profiling one; 9 and 10 generate the history dataset first;
                                   --soak: instead, 1,000 messages/s for MINUTES against a
                                   50 ms Twilio, RSS and p99 every 30 s, to
                                   target/bench/soak.md; SMS_NOTIFY_BENCH_PROFILER, e.g.
                                   `valgrind --tool=callgrind`: the service runs under it;
                                   SMS_NOTIFY_BENCH_MESSAGES: figure 12's message count;
                                   SMS_NOTIFY_BENCH_KEEP_HISTORY=1: 9 and 10 keep their
                                   dataset's database, to examine by hand)
  api-fuzz [--examples N]          Schemathesis against the served /openapi.json (default
                                   100 examples per operation; installed under target/)
  typescript                       the TypeScript client (clients/typescript): types generated
                                   from docs/openapi.json, compiled, tested against a live
                                   service (needs Node.js 18+ and npm)
  fraud-sim [--seed N] [--days D] [--params FILE] [--short] [--check]
                                   the fraud guard on a simulated week of traffic and attacks
                                   (release build; xtask/fraud-sim/params.toml), a table, and
                                   target/fraud-sim/report.json and chart.png (--check: exit
                                   1 when a target is missed)
  openapi                          write the API's OpenAPI description to docs/openapi.json
                                   (commit it; a test fails while it differs from the code)
  fuzz [--seconds N] [--target NAME]
                                   the AFL++ targets of fuzz/ (phone, status_callback,
                                   json_bodies, template), each for N seconds (default 60);
                                   fails on any crash (needs cargo-afl: cargo install
                                   cargo-afl --locked && cargo afl config --build)
";

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Test {
        lint: bool,
        api_fuzz: bool,
        fuzz: bool,
        typescript: bool,
        runner_args: Vec<String>,
    },
    Lint,
    Bench(bench::Options),
    ApiFuzz {
        examples: u32,
    },
    Fuzz {
        seconds: u64,
        target: Option<String>,
    },
    Openapi,
    Typescript,
    FraudSim {
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Test {
            lint,
            api_fuzz,
            fuzz,
            typescript,
            runner_args,
        } => steps::test(
            steps::Checks {
                lint,
                api_fuzz,
                fuzz,
                typescript,
            },
            &runner_args,
        ),
        Command::Lint => steps::lint(),
        Command::Bench(options) => steps::bench(options),
        Command::ApiFuzz { examples } => api_fuzz::run(examples),
        Command::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
        Command::Openapi => openapi::run(),
        Command::Typescript => typescript::run(),
        Command::FraudSim { args } => fraud_sim::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Command::Help),
        "lint" => match rest.first() {
            None => Ok(Command::Lint),
            Some(arg) => Err(format!("unexpected argument '{arg}' for lint")),
        },
        "bench" => {
            let mut options = bench::Options::default();
            let mut args = rest.iter();
            while let Some(arg) = args.next() {
                match arg.as_str() {
                    "--quick" => options.quick = true,
                    "--only" => {
                        let figure = args.next().and_then(|figure| figure.parse().ok());
                        match figure {
                            Some(figure @ 1..=13) => options.only = Some(figure),
                            _ => return Err("--only takes a figure number, 1 to 13".into()),
                        }
                    }
                    "--soak" => {
                        let minutes = args.next().and_then(|minutes| minutes.parse().ok());
                        match minutes {
                            Some(minutes @ 1..) => options.soak_minutes = Some(minutes),
                            _ => return Err("--soak takes a number of minutes, 1 or more".into()),
                        }
                    }
                    other => return Err(format!("unexpected argument '{other}' for bench")),
                }
            }
            Ok(Command::Bench(options))
        }
        "test" => {
            let (own, runner_args) = match rest.iter().position(|arg| arg == "--") {
                Some(dash_dash) => (&rest[..dash_dash], rest[dash_dash + 1..].to_vec()),
                None => (rest, Vec::new()),
            };
            let mut lint = true;
            let mut api_fuzz = true;
            let mut fuzz = true;
            let mut typescript = true;
            for arg in own {
                match arg.as_str() {
                    "--no-lint" => lint = false,
                    "--no-api-fuzz" => api_fuzz = false,
                    "--no-fuzz" => fuzz = false,
                    "--no-typescript" => typescript = false,
                    other => return Err(format!("unexpected argument '{other}' for test")),
                }
            }
            Ok(Command::Test {
                lint,
                api_fuzz,
                fuzz,
                typescript,
                runner_args,
            })
        }
        "typescript" => match rest.first() {
            None => Ok(Command::Typescript),
            Some(arg) => Err(format!("unexpected argument '{arg}' for typescript")),
        },
        // The simulation reads its own options, and refuses those it does not know.
        "fraud-sim" => Ok(Command::FraudSim {
            args: rest.to_vec(),
        }),
        "openapi" => match rest.first() {
            None => Ok(Command::Openapi),
            Some(arg) => Err(format!("unexpected argument '{arg}' for openapi")),
        },
        "api-fuzz" => match rest {
            [] => Ok(Command::ApiFuzz {
                examples: api_fuzz::DEFAULT_EXAMPLES,
            }),
            [flag, count] if flag == "--examples" => match count.parse::<u32>() {
                Ok(examples) if examples > 0 => Ok(Command::ApiFuzz { examples }),
                _ => Err(format!("--examples takes a positive number, not '{count}'")),
            },
            [arg, ..] => Err(format!("unexpected argument '{arg}' for api-fuzz")),
        },
        "fuzz" => {
            let mut seconds = fuzz::DEFAULT_SECONDS;
            let mut target = None;
            let mut args = rest.iter();
            while let Some(arg) = args.next() {
                match (arg.as_str(), args.next()) {
                    ("--seconds", value) => match value.map(|value| value.parse::<u64>()) {
                        Some(Ok(value)) if value > 0 => seconds = value,
                        _ => return Err("--seconds takes a positive number".into()),
                    },
                    ("--target", Some(name)) if fuzz::TARGETS.contains(&name.as_str()) => {
                        target = Some(name.clone());
                    }
                    ("--target", _) => {
                        return Err(format!(
                            "--target takes one of {}",
                            fuzz::TARGETS.join(", ")
                        ))
                    }
                    (other, _) => return Err(format!("unexpected argument '{other}' for fuzz")),
                }
            }
            Ok(Command::Fuzz { seconds, target })
        }
        other => Err(format!("unknown command '{other}'")),
    }
}

/// The workspace root, whatever directory `cargo xtask` was started from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::{bench, parse_args, Command};

    fn parse(args: &[&str]) -> Result<Command, String> {
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        parse_args(&args)
    }

    #[test]
    fn no_arguments_or_help_asks_for_the_usage() {
        assert_eq!(parse(&[]), Ok(Command::Help));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn test_passes_what_follows_the_double_dash_to_the_runner() {
        assert_eq!(
            parse(&["test", "--no-lint", "--", "-p", "domain", "--no-lint"]),
            Ok(Command::Test {
                lint: false,
                api_fuzz: true,
                fuzz: true,
                typescript: true,
                runner_args: vec!["-p".into(), "domain".into(), "--no-lint".into()],
            })
        );
        assert_eq!(
            parse(&["test", "--no-api-fuzz", "--no-fuzz", "--no-typescript"]),
            Ok(Command::Test {
                lint: true,
                api_fuzz: false,
                fuzz: false,
                typescript: false,
                runner_args: vec![],
            })
        );
    }

    #[test]
    fn api_fuzz_takes_an_example_budget() {
        assert_eq!(
            parse(&["api-fuzz"]),
            Ok(Command::ApiFuzz {
                examples: crate::api_fuzz::DEFAULT_EXAMPLES
            })
        );
        assert_eq!(
            parse(&["api-fuzz", "--examples", "5"]),
            Ok(Command::ApiFuzz { examples: 5 })
        );
        assert!(parse(&["api-fuzz", "--examples", "0"]).is_err());
        assert!(parse(&["api-fuzz", "--examples"]).is_err());
    }

    #[test]
    fn fuzz_takes_a_budget_and_a_known_target() {
        assert_eq!(
            parse(&["fuzz"]),
            Ok(Command::Fuzz {
                seconds: crate::fuzz::DEFAULT_SECONDS,
                target: None
            })
        );
        assert_eq!(
            parse(&["fuzz", "--target", "phone", "--seconds", "600"]),
            Ok(Command::Fuzz {
                seconds: 600,
                target: Some("phone".into())
            })
        );
        assert!(parse(&["fuzz", "--seconds", "0"]).is_err());
        assert!(parse(&["fuzz", "--seconds"]).is_err());
        assert!(parse(&["fuzz", "--target", "everything"]).is_err());
    }

    #[test]
    fn bench_is_full_unless_asked_to_be_quick_or_for_one_figure() {
        let full = bench::Options::default();
        assert_eq!(parse(&["bench"]), Ok(Command::Bench(full)));
        assert_eq!(
            parse(&["bench", "--only", "2", "--quick"]),
            Ok(Command::Bench(bench::Options {
                quick: true,
                only: Some(2),
                soak_minutes: None,
            }))
        );
        assert_eq!(
            parse(&["bench", "--soak", "30"]),
            Ok(Command::Bench(bench::Options {
                soak_minutes: Some(30),
                ..full
            }))
        );
        assert!(parse(&["bench", "--soak", "0"]).is_err());
        assert_eq!(
            parse(&["bench", "--only", "10"]),
            Ok(Command::Bench(bench::Options {
                only: Some(10),
                ..full
            }))
        );
        assert!(parse(&["bench", "--only", "14"]).is_err());
        assert!(parse(&["bench", "--only"]).is_err());
    }

    #[test]
    fn fraud_sim_passes_its_options_to_the_simulation() {
        assert_eq!(
            parse(&["fraud-sim", "--seed", "7", "--days", "2"]),
            Ok(Command::FraudSim {
                args: vec!["--seed".into(), "7".into(), "--days".into(), "2".into()]
            })
        );
    }

    #[test]
    fn unknown_commands_and_flags_are_refused() {
        assert!(parse(&["bench", "--fast"]).is_err());
        assert!(parse(&["test", "--fast"]).is_err());
        assert!(parse(&["lint", "--fix"]).is_err());
        assert!(parse(&["openapi", "--out"]).is_err());
    }
}
