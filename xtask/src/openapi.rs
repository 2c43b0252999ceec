//! `cargo xtask openapi`: writes the API's OpenAPI description to [`PATH`], where it is
//! committed so that client generators (`clients/typescript`) and reviewers see API changes in
//! diffs. The document comes from the code through `sms-notify openapi` (this crate depends on
//! no workspace crate); the CLI's test `committed_openapi_file_matches_the_code` fails when the
//! committed file is stale and names this command.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// Where the description is committed, from the workspace root.
pub(crate) const PATH: &str = "docs/openapi.json";

pub(crate) fn run() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let output = Command::new("cargo")
        .args([
            "run",
            "--quiet",
            "--package",
            "cli",
            "--bin",
            "sms-notify",
            "--",
        ])
        .arg("openapi")
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .context("could not start `cargo run --package cli`")?;
    if !output.status.success() {
        bail!("`sms-notify openapi` failed ({}), see above", output.status);
    }
    let path = root.join(PATH);
    let unchanged = std::fs::read(&path).is_ok_and(|committed| committed == output.stdout);
    std::fs::write(&path, &output.stdout)
        .with_context(|| format!("could not write {}", path.display()))?;
    eprintln!(
        "{PATH}: {}",
        if unchanged { "unchanged" } else { "written" }
    );
    Ok(())
}
