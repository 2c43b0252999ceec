//! `cargo xtask fraud-sim`: the fraud guard of issue 18 judged on simulated traffic. A week of
//! legitimate users in about thirty countries, a product-launch surge and five pumping attacks
//! go through the real use cases ([`app::Services`]) on a real store with a simulated clock;
//! the run prints what was refused, writes it as JSON and as a chart under
//! `target/fraud-sim/`, and with `--check` fails when a target is missed.
//!
//! A package of its own beside `xtask`, which must build when the workspace does not: this
//! one depends on `app`. The traffic model (`traffic`, its parameters in `params.toml`) knows
//! nothing of the guard, so that the guard cannot be tuned to the simulation's code, only to
//! the traffic it describes.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod chart;
mod params;
mod report;
mod sim;
mod tally;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::TimeDelta;

use params::Params;
use report::Report;

const USAGE: &str = "\
usage: fraud-sim [--params FILE] [--short] [--seed N] [--days D] [--out DIR] [--check] [--quiet]

  --params FILE  the traffic model (default: params.toml beside this package)
  --short        the file's short run: fewer days and users, the attacks on one day
  --seed N       the random seed (default: the file's)
  --days D       days to simulate (default: the file's); attacks after the last are not run
  --out DIR      where report.json and chart.png go (default: target/fraud-sim)
  --check        exit 1 when a target is missed
  --quiet        no progress lines
";

#[derive(Debug, Default, PartialEq)]
struct Options {
    params: Option<PathBuf>,
    short: bool,
    seed: Option<u64>,
    days: Option<u32>,
    out: Option<PathBuf>,
    check: bool,
    quiet: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} takes a value"))
        };
        match arg.as_str() {
            "--params" => options.params = Some(value("--params")?.into()),
            "--out" => options.out = Some(value("--out")?.into()),
            "--seed" => {
                let seed = value("--seed")?;
                options.seed = Some(
                    seed.parse()
                        .map_err(|_| format!("--seed: `{seed}` is not a number"))?,
                );
            }
            "--days" => {
                let days = value("--days")?;
                match days.parse() {
                    Ok(days) if days > 0 => options.days = Some(days),
                    _ => return Err(format!("--days: `{days}` is not a positive number")),
                }
            }
            "--check" => options.check = true,
            "--short" => options.short = true,
            "--quiet" => options.quiet = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether every target was met, or `--check` was not given.
fn run(options: &Options) -> anyhow::Result<bool> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let params_path = options
        .params
        .clone()
        .unwrap_or_else(|| manifest.join("params.toml"));
    let mut params = Params::read(&params_path)?;
    if options.short {
        params = params.shortened()?;
    }
    if let Some(seed) = options.seed {
        params.seed = seed;
    }
    if let Some(days) = options.days {
        params.days = days;
    }
    for when in params.attack_times() {
        let start = params.time_of(when.day, &when.at)?;
        if start + TimeDelta::minutes(i64::from(when.minutes)) > params.end() {
            eprintln!(
                "note: the attack on day {} at {} does not end within {} days: cut short or not run",
                when.day, when.at, params.days
            );
        }
    }
    let out = options.out.clone().unwrap_or_else(|| {
        manifest
            .parent()
            .and_then(|xtask| xtask.parent())
            .map_or_else(|| PathBuf::from("target"), |root| root.join("target"))
            .join("fraud-sim")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    eprintln!(
        "fraud-sim: {}{} days, seed {}, {}",
        if options.short { "short run, " } else { "" },
        params.days,
        params.seed,
        params_path.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let tally = runtime.block_on(sim::run(&params, options.quiet))?;

    let report = Report::new(&params, &params_path.display().to_string(), &tally);
    println!("{}", report.table(params.targets.attack_grace_codes));
    let json = out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let png = out.join("chart.png");
    chart::write(&png, &tally.hours, params.days, &bands(&params)?)?;
    println!("written: {}, {}", json.display(), png.display());

    let misses = report.misses();
    if misses.is_empty() {
        println!("every target met");
        return Ok(true);
    }
    println!("targets missed:");
    for miss in &misses {
        println!("  {}", miss.name);
    }
    Ok(!options.check)
}

/// Where the chart shades the attacks and the surge.
fn bands(params: &Params) -> anyhow::Result<Vec<chart::Band>> {
    let hours_from_start = |day, at: &str| -> anyhow::Result<f64> {
        Ok((params.time_of(day, at)? - params.start).num_minutes() as f64 / 60.0)
    };
    let mut bands = Vec::new();
    let labels = [
        "(a) range",
        "(b) premium",
        "(c) prefixes",
        "(d) one IP",
        "(d) /24",
    ];
    for (label, when) in labels.iter().zip(params.attack_times()) {
        let from_hour = hours_from_start(when.day, &when.at)?;
        bands.push(chart::Band {
            label: (*label).to_owned(),
            from_hour,
            to_hour: from_hour + f64::from(when.minutes) / 60.0,
            attack: true,
        });
    }
    let surge = &params.surge;
    let from_hour = hours_from_start(surge.day, &surge.at)?;
    bands.push(chart::Band {
        label: "surge".to_owned(),
        from_hour,
        to_hour: from_hour + f64::from(surge.hours),
        attack: false,
    });
    Ok(bands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_args(&args.iter().map(ToString::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn options_are_read_and_mistakes_refused() {
        assert_eq!(
            parse(&["--seed", "7", "--days", "2", "--check"]),
            Ok(Options {
                seed: Some(7),
                days: Some(2),
                check: true,
                ..Options::default()
            })
        );
        assert!(parse(&["--days", "0"]).is_err());
        assert!(parse(&["--seed"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }
}
