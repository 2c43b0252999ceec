//! Names the database schema this binary expects in `sms-notify --version`: the highest
//! migration number under `migrations/`, the same files the store adapters embed with
//! `sqlx::migrate!`. An operator comparing a binary with a database needs that number, and
//! reading it here keeps the adapters' migrators private.

use std::error::Error;
use std::path::Path;

fn main() -> Result<(), Box<dyn Error>> {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let postgres = highest_migration(&migrations.join("postgres"))?;
    let sqlite = highest_migration(&migrations.join("sqlite"))?;
    let schema = if postgres == sqlite {
        format!("database schema {postgres}")
    } else {
        format!("database schema {postgres} on PostgreSQL, {sqlite} on SQLite")
    };
    println!(
        "cargo:rustc-env=SMS_NOTIFY_VERSION={} ({schema})",
        env!("CARGO_PKG_VERSION")
    );
    println!("cargo:rustc-env=SMS_NOTIFY_SCHEMA_POSTGRES={postgres}");
    println!("cargo:rustc-env=SMS_NOTIFY_SCHEMA_SQLITE={sqlite}");
    // A directory is watched whole: a new migration rebuilds the version.
    println!("cargo:rerun-if-changed={}", migrations.display());
    Ok(())
}

/// The number of the last migration in `dir`, whose files are named `NNNN_description.sql`.
fn highest_migration(dir: &Path) -> Result<u32, Box<dyn Error>> {
    let mut highest = None;
    for entry in std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let Some(number) = name
            .strip_suffix(".sql")
            .and_then(|stem| stem.split_once('_'))
            .and_then(|(number, _)| number.parse::<u32>().ok())
        else {
            continue;
        };
        highest = highest.max(Some(number));
    }
    highest.ok_or_else(|| format!("no NNNN_name.sql migration in {}", dir.display()).into())
}
