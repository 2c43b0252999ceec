//! `openapi`: the API's OpenAPI description as a file would hold it, without a running service.
//!
//! `cargo xtask openapi` writes this output to `docs/openapi.json`, which is committed so that
//! client generators and reviewers see API changes in diffs; a test fails when the two differ.
//! So the text must depend only on the code: keys sorted at every level (whatever map types
//! utoipa or serde_json's features pick), two-space indents, one trailing newline.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// The description `/openapi.json` serves, as the committed file's text.
pub fn document() -> anyhow::Result<String> {
    let value = serde_json::to_value(app::http::openapi())?;
    let mut text = serde_json::to_string_pretty(&Sorted(&value))?;
    text.push('\n');
    Ok(text)
}

pub fn run() -> anyhow::Result<()> {
    print!("{}", document()?);
    Ok(())
}

/// A JSON value serialized with the keys of every object in sorted order.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => map
                .iter()
                .map(|(key, value)| (key, Sorted(value)))
                .collect::<BTreeMap<_, _>>()
                .serialize(serializer),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            scalar => scalar.serialize(serializer),
        }
    }
}
