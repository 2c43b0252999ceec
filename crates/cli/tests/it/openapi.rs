//! The committed `docs/openapi.json` is what the code describes: client generators read the
//! file, and reviewers see API changes in its diff, so it must never lag behind.

use std::path::Path;

const COMMITTED: &str = "docs/openapi.json";
const FIX: &str = "run `cargo xtask openapi` and commit docs/openapi.json";

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(COMMITTED);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}; {FIX}", path.display()))
}

#[test]
fn committed_openapi_file_matches_the_code() {
    let output = assert_cmd::Command::cargo_bin("sms-notify")
        .unwrap()
        .env_clear()
        .arg("openapi")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = committed();
    if generated != committed {
        let first_difference = generated
            .lines()
            .zip(committed.lines())
            .position(|(generated, committed)| generated != committed)
            .unwrap_or_else(|| generated.lines().count().min(committed.lines().count()));
        panic!(
            "{COMMITTED} differs from the API the code describes, from line {}:\n  \
             code:      {}\n  committed: {}\n{FIX}",
            first_difference + 1,
            generated
                .lines()
                .nth(first_difference)
                .unwrap_or("(end of file)"),
            committed
                .lines()
                .nth(first_difference)
                .unwrap_or("(end of file)"),
        );
    }
}

/// What `/openapi.json` serves, key order aside, so the file describes the running service.
#[test]
fn committed_openapi_file_is_what_the_service_serves() {
    let committed: serde_json::Value = serde_json::from_str(&committed()).unwrap();
    let served = serde_json::to_value(app::http::openapi()).unwrap();
    assert!(
        committed == served,
        "{COMMITTED} is not what /openapi.json serves; {FIX}"
    );
    assert!(committed["paths"]["/v1/messages"]["post"].is_object());
}

/// OpenAPI requires it, and generators key operations by it: a repeated id made the
/// TypeScript client's `GET /v1/verifications/{id}` answer a message.
#[test]
fn every_operation_has_an_id_of_its_own() {
    let document = serde_json::to_value(app::http::openapi()).unwrap();
    let mut ids: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|operations| operations.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let operations = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        operations,
        "a repeated operationId among {ids:?}"
    );
}
