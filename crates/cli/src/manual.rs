//! `completions` and `man`: what a packaged command line is expected to ship, generated from
//! the same clap definition as `--help` so that none of them can drift from the others.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::args::Cli;
use crate::failure::Failure;

const BINARY: &str = "sms-notify";

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BINARY, &mut script);
    if shell == clap_complete::Shell::Bash {
        script = repair_bash_states(&script).into_bytes();
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("writing the completion script")
}

/// clap_complete's bash script (clap issue 6421, open in 4.6) spells the state of a subcommand
/// of a hyphenated binary two ways: `sms__notify__subcmd__send` where it walks the words,
/// `sms__subcmd__notify__subcmd__send` in the arms that complete it, so nothing after a
/// subcommand completed. One spelling makes them agree; once clap spells them alike, there is
/// nothing left to replace.
fn repair_bash_states(script: &[u8]) -> String {
    String::from_utf8_lossy(script).replace("sms__subcmd__notify", "sms__notify")
}

pub fn man(out_dir: Option<&Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    match out_dir {
        None => {
            let mut stdout = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut stdout)
                .context("writing the manual page")?;
            stdout.flush().context("writing the manual page")
        }
        Some(dir) if !dir.is_dir() => Err(Failure::usage(format!(
            "{}: no such directory; create it first",
            dir.display()
        ))),
        Some(dir) => {
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            println!("manual pages written to {}", dir.display());
            Ok(())
        }
    }
}
