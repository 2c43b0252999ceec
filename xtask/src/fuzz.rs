//! `cargo xtask fuzz`: the coverage-guided fuzz targets of `fuzz/` under AFL++, through
//! cargo-afl (which works on the stable toolchain; cargo-fuzz needs a nightly one).
//!
//! The targets are built by `cargo afl build` into `target/afl`, apart from the ordinary
//! builds: its instrumentation flags would otherwise rebuild everything on each switch. Each
//! target then runs for the budget from its seed corpus `fuzz/corpus/<target>/`, its findings in
//! `target/fuzz/<target>/default/` (`crashes/`, `hangs/`, `queue/`), started afresh each run.
//! Any crash fails the command; replay one with `cargo run -p fuzz --bin <target> -- <file>`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Every target, in the order they run: a binary of the `fuzz` package each.
pub(crate) const TARGETS: &[&str] = &["phone", "status_callback", "json_bodies", "template"];
/// Seconds per target when run by hand without `--seconds`.
pub(crate) const DEFAULT_SECONDS: u64 = 60;
pub(crate) const INSTALL_HINT: &str =
    "cargo install cargo-afl --locked && cargo afl config --build";
/// AFL++'s time limit per input, in milliseconds: generous, because a run shares the machine
/// and `json_bodies` sets up its store on a child's first input.
const TIMEOUT_MS: &str = "5000";
/// Inputs per forked child in persistent mode: `json_bodies` keeps what inputs store, so a
/// child is replaced now and then rather than growing for the whole run.
const LOOP_COUNT: &str = "10000";

/// Whether cargo-afl is installed with its AFL++ runtime built (`cargo afl config --build`):
/// only then does its version name AFL++'s.
pub(crate) fn installed() -> bool {
    Command::new("cargo")
        .args(["afl", "--version"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| {
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("AFL++")
        })
}

/// Builds the targets and runs each (or only `only`) for `seconds`.
pub(crate) fn run(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    if !installed() {
        bail!("cargo-afl with a built AFL++ runtime is needed: {INSTALL_HINT}");
    }
    let root = crate::workspace_root();
    let targets: Vec<&str> = match only {
        Some(target) => vec![target],
        None => TARGETS.to_vec(),
    };
    build(&root, only)?;
    let mut crashed = Vec::new();
    for target in targets {
        let stats = fuzz(&root, target, seconds)?;
        eprintln!(
            "    {target}: {}s, {} execs ({}/s), corpus {}, crashes {}, hangs {}",
            stats.get("run_time"),
            stats.get("execs_done"),
            stats.get("execs_per_sec"),
            stats.get("corpus_count"),
            stats.crashes.len(),
            stats.get("saved_hangs"),
        );
        crashed.extend(stats.crashes);
    }
    if !crashed.is_empty() {
        bail!(
            "the fuzzer found {} crash(es); replay each with `cargo run -p fuzz --bin <target> -- <file>`:\n{}",
            crashed.len(),
            crashed.join("\n")
        );
    }
    Ok(())
}

/// `cargo afl`, without what `cargo run` told xtask about itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...): ring's build script reruns when those change, and with it every
/// crate above ring, so a `cargo afl build` by hand and one by xtask would rebuild each other.
fn cargo_afl() -> Command {
    let mut command = Command::new("cargo");
    command.arg("afl");
    for (name, _) in std::env::vars_os() {
        let from_cargo_run = name.to_str().is_some_and(|name| {
            name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name,
                    "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
                )
        });
        if from_cargo_run {
            command.env_remove(name);
        }
    }
    command
}

fn build(root: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let mut command = cargo_afl();
    command
        .args(["build", "--release", "--quiet", "--package", "fuzz"])
        .env("CARGO_TARGET_DIR", root.join("target").join("afl"))
        .current_dir(root);
    match only {
        Some(target) => command.args(["--bin", target]),
        None => command.arg("--bins"),
    };
    let status = command
        .status()
        .context("could not start `cargo afl build`")?;
    if !status.success() {
        bail!("`cargo afl build` failed ({status}), see above");
    }
    Ok(())
}

/// What one target's run left in `fuzzer_stats`, and its crash files.
struct Stats {
    fields: Vec<(String, String)>,
    crashes: Vec<String>,
}

impl Stats {
    fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map_or("?", |(_, value)| value.as_str())
    }
}

fn fuzz(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Stats> {
    let output = root.join("target").join("fuzz").join(target);
    // A fresh start: AFL++ refuses an output directory of an earlier run without being told
    // to resume, and a resumed run would not be the budget it says.
    if output.exists() {
        std::fs::remove_dir_all(&output)
            .with_context(|| format!("could not clear {}", output.display()))?;
    }
    std::fs::create_dir_all(&output)
        .with_context(|| format!("could not create {}", output.display()))?;
    let log_path = output.join("afl-fuzz.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let binary = root.join("target").join("afl").join("release").join(target);
    let corpus = root.join("fuzz").join("corpus").join(target);
    let status = cargo_afl()
        .args(["fuzz", "-V", &seconds.to_string(), "-t", TIMEOUT_MS])
        .arg("-i")
        .arg(&corpus)
        .arg("-o")
        .arg(&output)
        .arg(&binary)
        // Plain status lines instead of the full-screen UI, and no refusals over a machine
        // set up for something else: a governor other than `performance`, core dumps handed
        // to a helper (containers), every core already taken by another fuzzer.
        .env("AFL_NO_UI", "1")
        .env("AFL_SKIP_CPUFREQ", "1")
        .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
        .env("AFL_NO_AFFINITY", "1")
        .env("AFL_FUZZER_LOOPCOUNT", LOOP_COUNT)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("could not share the log file")?)
        .stderr(log)
        .status()
        .context("could not start `cargo afl fuzz`")?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        bail!(
            "`cargo afl fuzz` for {target} failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let findings = output.join("default");
    let stats = std::fs::read_to_string(findings.join("fuzzer_stats"))
        .with_context(|| format!("{target}: AFL++ left no fuzzer_stats"))?;
    Ok(Stats {
        fields: parse_stats(&stats),
        crashes: crash_files(&findings.join("crashes"))?,
    })
}

/// `fuzzer_stats` is one `name : value` per line.
fn parse_stats(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The inputs AFL++ saved as crashes, without the README it writes beside them.
fn crash_files(directory: &Path) -> anyhow::Result<Vec<String>> {
    if !directory.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory)
        .with_context(|| format!("could not read {}", directory.display()))?
    {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name != "README.txt") {
            files.push(path.display().to_string());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::{crash_files, parse_stats};

    #[test]
    fn stats_are_read_by_name() {
        let stats = parse_stats("start_time        : 1764870000\nexecs_done        : 1234\n");
        assert_eq!(
            stats,
            vec![
                ("start_time".to_owned(), "1764870000".to_owned()),
                ("execs_done".to_owned(), "1234".to_owned())
            ]
        );
    }

    #[test]
    fn crashes_are_the_files_beside_the_readme() {
        let directory = std::env::temp_dir().join(format!("xtask-crashes-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("README.txt"), "how to reproduce").unwrap();
        std::fs::write(directory.join("id:000000,sig:06"), "x").unwrap();

        let crashes = crash_files(&directory).unwrap();
        std::fs::remove_dir_all(&directory).unwrap();

        assert_eq!(crashes.len(), 1);
        assert!(crashes[0].ends_with("id:000000,sig:06"));
        assert!(crash_files(&directory.join("missing")).unwrap().is_empty());
    }
}
