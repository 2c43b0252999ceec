//! Tidy checks on the workspace itself, as ordinary tests so that `cargo xtask test` runs them:
//! every `.rs` file opens with a `//!` saying why it exists, crates depend only on what the dependency rule
//! allows, no `dbg!` or `todo!` is left under `crates/`, and ARCHITECTURE.md stays a short map
//! that names every crate and folder of `app`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::workspace_root;

/// Which workspace crates a crate may depend on, and which outside crates it must never depend
/// on. Only normal and build dependencies count: tests may use anything. A name ending in `*`
/// stands for every crate with that prefix. A new crate needs a row here.
struct Rule {
    krate: &'static str,
    workspace_deps: WorkspaceDeps,
    banned: &'static [&'static str],
}

enum WorkspaceDeps {
    Only(&'static [&'static str]),
    Any,
}

/// No runtime, no I/O, no framework: the domain is values and rules.
const NO_IO: &[&str] = &[
    "tokio", "sqlx", "reqwest", "axum", "hyper", "wiremock", "tower",
];
/// Ports speak domain types, never a driver's or a web framework's.
const NO_DRIVERS: &[&str] = &["sqlx", "reqwest", "axum", "hyper"];

const RULES: &[Rule] = &[
    Rule {
        krate: "domain",
        workspace_deps: WorkspaceDeps::Only(&[]),
        banned: NO_IO,
    },
    Rule {
        krate: "ports",
        workspace_deps: WorkspaceDeps::Only(&["domain"]),
        banned: NO_DRIVERS,
    },
    Rule {
        krate: "template",
        workspace_deps: WorkspaceDeps::Only(&["domain", "ports"]),
        banned: &[],
    },
    Rule {
        krate: "adapters-*",
        workspace_deps: WorkspaceDeps::Only(&["domain", "ports", "store-batch"]),
        banned: &[],
    },
    // Group commit, for any store: no database driver.
    Rule {
        krate: "store-batch",
        workspace_deps: WorkspaceDeps::Only(&["ports"]),
        banned: NO_DRIVERS,
    },
    // Only `app` and `cli` name concrete adapters.
    Rule {
        krate: "app",
        workspace_deps: WorkspaceDeps::Only(&["domain", "ports", "template", "adapters-*"]),
        banned: &[],
    },
    Rule {
        krate: "cli",
        workspace_deps: WorkspaceDeps::Only(&["domain", "ports", "template", "adapters-*", "app"]),
        banned: &[],
    },
    // The fuzz targets in `fuzz/`: a test harness, like the end-to-end tests.
    Rule {
        krate: "fuzz",
        workspace_deps: WorkspaceDeps::Any,
        banned: &[],
    },
    // The end-to-end tests in `tests/`.
    Rule {
        krate: "e2e",
        workspace_deps: WorkspaceDeps::Any,
        banned: &[],
    },
    // Test support (a wiremock matcher): see TEST_SUPPORT.
    Rule {
        krate: "wiremock-form",
        workspace_deps: WorkspaceDeps::Only(&[]),
        banned: &[],
    },
    Rule {
        krate: "xtask",
        workspace_deps: WorkspaceDeps::Only(&[]),
        banned: &[],
    },
    // `cargo xtask fraud-sim`: drives the use cases like a client, naming no adapter (the
    // store is the one `app`'s wiring chooses).
    Rule {
        krate: "fraud-sim",
        workspace_deps: WorkspaceDeps::Only(&["domain", "ports", "template", "app"]),
        banned: &[],
    },
];

/// Workspace crates for tests only: another crate may take one as a dev-dependency, never as a
/// normal or build dependency, so that test support never ships inside a product crate.
const TEST_SUPPORT: &[&str] = &["wiremock-form"];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl WorkspaceDeps {
    fn allows(&self, name: &str) -> bool {
        match self {
            WorkspaceDeps::Only(allowed) => allowed.iter().any(|pattern| matches(pattern, name)),
            WorkspaceDeps::Any => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            WorkspaceDeps::Only([]) => "no workspace crate".to_owned(),
            WorkspaceDeps::Only(allowed) => format!("only {}", allowed.join(", ")),
            WorkspaceDeps::Any => "any workspace crate".to_owned(),
        }
    }
}

/// What breaks the dependency rule in `cargo metadata --no-deps` output, one line per problem.
fn dependency_rule_violations(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let workspace: BTreeSet<&str> = packages
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or("?");
        let Some(rule) = RULES.iter().find(|rule| matches(rule.krate, name)) else {
            violations.push(format!(
                "crate `{name}` is not in the dependency rule: add a row for it to RULES in xtask/src/tidy.rs"
            ));
            continue;
        };
        let dependencies = package["dependencies"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for dependency in dependencies {
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            if kind == "dev" {
                continue;
            }
            let dependency_name = dependency["name"].as_str().unwrap_or("?");
            if TEST_SUPPORT.contains(&dependency_name) {
                violations.push(format!(
                    "crate `{name}` has a {kind} dependency on test-support crate \
                     `{dependency_name}`, which may only be a dev-dependency"
                ));
            } else if workspace.contains(dependency_name) {
                if !rule.workspace_deps.allows(dependency_name) {
                    violations.push(format!(
                        "crate `{name}` has a {kind} dependency on workspace crate `{dependency_name}`, \
                         but may depend on {}",
                        rule.workspace_deps.describe()
                    ));
                }
            } else if rule.banned.contains(&dependency_name) {
                violations.push(format!(
                    "crate `{name}` has a {kind} dependency on `{dependency_name}`, \
                     which it must never depend on (banned: {})",
                    rule.banned.join(", ")
                ));
            }
        }
    }
    violations
}

#[test]
fn crates_depend_only_on_what_the_dependency_rule_allows() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

    let violations = dependency_rule_violations(&metadata);

    assert!(
        violations.is_empty(),
        "the dependency rule is broken:\n{}\n",
        violations.join("\n")
    );
}

#[test]
fn the_dependency_rule_catches_what_it_forbids_and_ignores_dev_dependencies() {
    let metadata = serde_json::json!({ "packages": [
        { "name": "domain", "dependencies": [
            { "name": "tokio", "kind": null },
            { "name": "wiremock", "kind": "dev" },
        ]},
        { "name": "ports", "dependencies": [{ "name": "domain", "kind": null }] },
        { "name": "adapters-twilio", "dependencies": [
            { "name": "ports", "kind": null },
            { "name": "adapters-postgres", "kind": null },
        ]},
        { "name": "adapters-postgres", "dependencies": [
            { "name": "sqlx", "kind": null },
            { "name": "app", "kind": "dev" },
        ]},
        { "name": "app", "dependencies": [
            { "name": "adapters-twilio", "kind": null },
            { "name": "adapters-postgres", "kind": null },
        ]},
        { "name": "template", "dependencies": [{ "name": "app", "kind": "build" }] },
        { "name": "newcomer", "dependencies": [] },
        { "name": "adapters-vonage", "dependencies": [
            { "name": "ports", "kind": null },
            { "name": "wiremock-form", "kind": "dev" },
        ]},
        { "name": "e2e", "dependencies": [{ "name": "wiremock-form", "kind": null }] },
        { "name": "wiremock-form", "dependencies": [{ "name": "wiremock", "kind": null }] },
    ]});

    let violations = dependency_rule_violations(&metadata);

    assert_eq!(violations.len(), 5, "{violations:#?}");
    let mentions = |crate_name: &str, what: &str| {
        violations
            .iter()
            .any(|line| line.contains(&format!("`{crate_name}`")) && line.contains(what))
    };
    assert!(mentions("domain", "`tokio`"));
    assert!(mentions("adapters-twilio", "`adapters-postgres`"));
    assert!(mentions(
        "template",
        "build dependency on workspace crate `app`"
    ));
    assert!(mentions("newcomer", "add a row"));
    assert!(mentions(
        "e2e",
        "normal dependency on test-support crate `wiremock-form`"
    ));
}

/// Whether `source` opens (after blank lines) with a `//!` comment: an attribute, a `//`
/// comment or code first does not count.
fn opens_with_a_doc_comment(source: &str) -> bool {
    source.trim_start().starts_with("//!")
}

#[test]
fn a_file_opens_with_a_doc_comment_only_when_its_first_line_is_one() {
    assert!(opens_with_a_doc_comment("//! Why.\nuse std::fs;\n"));
    assert!(opens_with_a_doc_comment("\n\n//! Why.\n"));
    assert!(!opens_with_a_doc_comment("use std::fs;\n//! Too late.\n"));
    assert!(!opens_with_a_doc_comment(
        "#![allow(dead_code)]\n//! After an attribute.\n"
    ));
    assert!(!opens_with_a_doc_comment("// A plain comment.\n"));
    assert!(!opens_with_a_doc_comment("/// An item's doc.\nfn f() {}\n"));
    assert!(!opens_with_a_doc_comment(""));
}

#[test]
fn every_rust_file_opens_with_a_doc_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    // Every package's sources, tests included: a walk that found nothing would prove nothing.
    for member in ["crates", "fuzz", "tests", "xtask"] {
        assert!(
            files.iter().any(|path| path.starts_with(root.join(member))),
            "no .rs file found under {member}/"
        );
    }

    let missing: Vec<String> = files
        .iter()
        .filter(|path| !opens_with_a_doc_comment(&read(path)))
        .map(|path| {
            format!(
                "{}: does not open with a `//!` doc comment saying why it exists",
                relative(&root, path)
            )
        })
        .collect();

    assert!(missing.is_empty(), "\n{}\n", missing.join("\n"));
}

/// Debugging leftovers and unfinished code, as text: even a mention in a comment is worth a look.
const FORBIDDEN_MACROS: &[&str] = &["dbg!(", "todo!("];

fn forbidden_macro_uses(source: &str) -> Vec<(usize, &'static str)> {
    source
        .lines()
        .enumerate()
        .flat_map(|(index, line)| {
            FORBIDDEN_MACROS
                .iter()
                .filter(move |forbidden| line.contains(**forbidden))
                .map(move |forbidden| (index + 1, *forbidden))
        })
        .collect()
}

#[test]
fn forbidden_macros_are_found_with_their_line_numbers() {
    let source = "fn f() {\n    dbg!(1);\n}\nfn g() { todo!() }\nfn h() { dbg!(todo!()) }\n";
    assert_eq!(
        forbidden_macro_uses(source),
        [(2, "dbg!("), (4, "todo!("), (5, "dbg!("), (5, "todo!(")]
    );
}

#[test]
fn no_dbg_or_todo_is_left_under_crates() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);

    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let source = read(path);
            forbidden_macro_uses(&source)
                .into_iter()
                .map(|(line, forbidden)| {
                    format!("{}:{line}: `{forbidden}` left in", relative(&root, path))
                })
                .collect::<Vec<_>>()
        })
        .collect();

    assert!(found.is_empty(), "\n{}\n", found.join("\n"));
}

/// Every `.rs` file under `dir`, skipping build output (`target`) and hidden folders (`.git`,
/// `.cargo`).
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{} is readable: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry is readable").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            let skipped = path
                .file_name()
                .is_some_and(|name| name == "target" || name.to_string_lossy().starts_with('.'));
            if !skipped {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{} is readable: {error}", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// ARCHITECTURE.md is a map a reader takes in at once, not a diary: a ceiling on its length,
/// and every folder that holds code named in it, so that the map and the tree agree.
const ARCHITECTURE_MAX_LINES: usize = 150;

/// The folders the codemap must name: each crate, and each module folder of `app`.
fn mapped_folders(root: &Path) -> Vec<String> {
    let mut folders = Vec::new();
    for (parent, prefix) in [("crates", "crates/"), ("crates/app/src", "crates/app/src/")] {
        let Ok(entries) = fs::read_dir(root.join(parent)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                folders.push(format!("{prefix}{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    folders.sort();
    folders
}

fn architecture_problems(map: &str, folders: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let lines = map.lines().count();
    if lines > ARCHITECTURE_MAX_LINES {
        problems.push(format!(
            "ARCHITECTURE.md has {lines} lines, more than {ARCHITECTURE_MAX_LINES}: keep it a map, move history to docs/"
        ));
    }
    for folder in folders {
        if !map.contains(&format!("`{folder}`")) {
            problems.push(format!(
                "ARCHITECTURE.md's codemap does not name `{folder}`"
            ));
        }
    }
    problems
}

#[test]
fn the_architecture_check_finds_a_long_map_and_an_unnamed_folder() {
    let folders = ["crates/domain".to_owned(), "crates/app/src/http".to_owned()];
    let long =
        "line\n".repeat(ARCHITECTURE_MAX_LINES + 1) + "`crates/domain` `crates/app/src/http`";
    assert_eq!(architecture_problems(&long, &folders).len(), 1);
    assert_eq!(
        architecture_problems("`crates/domain`", &folders),
        ["ARCHITECTURE.md's codemap does not name `crates/app/src/http`"]
    );
    assert!(architecture_problems("`crates/domain`, `crates/app/src/http`", &folders).is_empty());
}

#[test]
fn architecture_md_is_a_short_map_naming_every_crate_and_app_folder() {
    let root = workspace_root();
    let folders = mapped_folders(&root);
    assert!(
        folders.iter().any(|folder| folder == "crates/app/src/http"),
        "the walk found no folder of crates/app/src: {folders:?}"
    );
    let problems = architecture_problems(&read(&root.join("ARCHITECTURE.md")), &folders);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}
