//! Coverage-guided fuzz targets for what reaches the service from outside: phone numbers, Twilio's
//! status-callback form and its signature, the JSON request bodies, and template rendering with
//! the segment arithmetic behind it. One binary per target in `src/bin/`, each a thin call of
//! [`main`] on a module's `run`.
//!
//! Built by `cargo afl build` (which sets `--cfg fuzzing`), a target is an AFL++ persistent-mode
//! harness; `cargo xtask fuzz` builds and runs them. Built plainly, the same binary runs its
//! target once on each file named on its command line (every file of a named directory), or on
//! standard input: `cargo run -p fuzz --bin phone -- target/fuzz/phone/default/crashes/id:...`
//! replays what the fuzzer found. The tests run every seed of `corpus/` through its target.
//!
//! A workspace member rather than a package of its own, so that it shares the lockfile and
//! clippy and the tests keep it compiling with the code it drives; afl is a dependency only
//! under `cfg(fuzzing)`, so the plain builds never compile or link it.
//!
//! A target's findings are its panics: a panic in the code under test, or an `assert!` here
//! stating what must hold for any input (a number parsed once parses again to itself, a client
//! mistake is never a 5xx, ...).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a harness's panics are its findings

pub mod json_bodies;
pub mod phone;
pub mod status_callback;
pub mod template;

/// Runs `target` under AFL++ (persistent mode; a panic aborts, which AFL++ records as a crash).
#[cfg(fuzzing)]
pub fn main(target: fn(&[u8])) {
    afl::fuzz(true, target);
}

/// Runs `target` on each input named on the command line, or on standard input, naming each
/// input before it runs so that a panic is easy to match to its file.
#[cfg(not(fuzzing))]
pub fn main(target: fn(&[u8])) {
    use std::io::Read as _;

    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .expect("standard input is readable");
        target(&input);
        return;
    }
    for path in inputs(&paths) {
        eprintln!("{}", path.display());
        target(&std::fs::read(&path).expect("the input is readable"));
    }
}

/// The files named, a directory standing for its files (not recursively), in name order.
pub fn inputs(paths: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .expect("the directory is readable")
                .map(|entry| entry.expect("the directory is readable").path())
                .filter(|entry| entry.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Every seed of `corpus/<target>/` through `target`, for the tests.
#[cfg(test)]
fn run_seeds(name: &str, target: fn(&[u8])) {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let seeds = inputs(&[corpus]);
    assert!(!seeds.is_empty(), "corpus/{name} has seeds");
    for seed in seeds {
        target(&std::fs::read(&seed).unwrap());
    }
}
