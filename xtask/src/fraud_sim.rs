//! `cargo xtask fraud-sim`: runs the fraud guard's simulation (the `fraud-sim` package in
//! `xtask/fraud-sim`, which this crate cannot depend on: it needs the whole workspace to
//! build), in release mode for the full week, and its short run for `cargo xtask test`.

use std::process::Command;

use anyhow::{bail, Context as _};

/// The full simulation, built in release mode, with `args` passed on (`--seed`, `--days`,
/// `--params`, `--short`, `--check`).
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    cargo_run(
        &[
            "run",
            "--release",
            "--quiet",
            "--package",
            "fraud-sim",
            "--",
        ],
        args,
    )
}

/// The short run of `cargo xtask test`, on the debug build the tests share most of their
/// dependencies with (a release build of the workspace would cost CI more than the run).
pub(crate) fn short() -> anyhow::Result<()> {
    // `--check` fails the run when the guard misses one of the targets.
    let args = ["--short", "--quiet", "--check"].map(str::to_owned);
    cargo_run(&["run", "--quiet", "--package", "fraud-sim", "--"], &args)
}

fn cargo_run(cargo_args: &[&str], args: &[String]) -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(cargo_args)
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .context("could not start `cargo run --package fraud-sim`")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => bail!("the fraud simulation missed a target, see above"),
        _ => bail!("the fraud simulation failed ({status}), see above"),
    }
}
