//! The `/v2` API held to Twilio's own description of Verify (`twilio_verify_v2.json` from
//! twilio-oai), read where it lies: `TWILIO_OAI_DIR`, or `../shared/twilio-oai` next to the
//! workspace. Every form field a request sends must be one its operation defines, with the
//! type it defines, and every required one must be there; every answer must be one the
//! operation documents, every property of its schema present (null where Twilio allows it),
//! none unknown, each of its type, SIDs of their pattern, `channel` of its enum and `status`
//! among the statuses the description lists. Without the file the checks fail under CI
//! (`CI=true`), so that a missing description cannot pass there unnoticed; elsewhere they say
//! on stderr that they skipped.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

fn description_path() -> PathBuf {
    match std::env::var_os("TWILIO_OAI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/twilio-oai"),
    }
    .join("twilio_verify_v2.json")
}

/// `CI` as CI services set it (`true`); unset, empty, `false` or `0` is a developer's machine.
fn under_ci(ci: Option<&str>) -> bool {
    match ci.map(str::trim) {
        None | Some("" | "0") => false,
        Some(value) => !value.eq_ignore_ascii_case("false"),
    }
}

/// Twilio's Verify description, parsed once; `None` (said on stderr) when it is absent on a
/// developer's machine, a panic under CI.
pub fn description() -> Option<&'static Value> {
    static DESCRIPTION: OnceLock<Result<Value, PathBuf>> = OnceLock::new();
    let loaded = DESCRIPTION.get_or_init(|| {
        let path = description_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(serde_json::from_str(&text).expect("twilio_verify_v2.json is JSON")),
            Err(_) => Err(path),
        }
    });
    let path = match loaded {
        Ok(description) => return Some(description),
        Err(path) => path,
    };
    let absent = format!(
        "Twilio's Verify description is not at {} (set TWILIO_OAI_DIR)",
        path.display()
    );
    assert!(
        !under_ci(std::env::var("CI").ok().as_deref()),
        "the /v2 contract cannot be checked under CI: {absent}"
    );
    eprintln!("skipped the /v2 contract checks: {absent}");
    None
}

/// Twilio's description, checking requests and answers of `/v2`.
#[derive(Clone, Copy)]
pub struct Contract {
    description: &'static Value,
}

impl Contract {
    pub fn load() -> Option<Self> {
        description().map(|description| Self { description })
    }

    fn operation(&self, path: &str, verb: &str) -> &'static Value {
        let operation = &self.description["paths"][path][verb];
        assert!(
            operation.is_object(),
            "the description has no {verb} {path}"
        );
        operation
    }

    /// Follows a `$ref` into `components/schemas`.
    fn resolve(&self, schema: &'static Value) -> &'static Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .expect("a local schema reference");
                let resolved = &self.description["components"]["schemas"][name];
                assert!(resolved.is_object(), "no schema {name}");
                resolved
            }
            None => schema,
        }
    }

    /// What is wrong with a request to `verb path` (the description's path template) carrying
    /// `fields` as its form body.
    pub fn request_problems(&self, path: &str, verb: &str, fields: &[(&str, &str)]) -> Vec<String> {
        let operation = self.operation(path, verb);
        let form =
            &operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
        let mut problems = Vec::new();
        if form.is_null() {
            if !fields.is_empty() {
                problems.push(format!("{verb} {path} takes no body, got {fields:?}"));
            }
            return problems;
        }
        let form = self.resolve(form);
        for required in form["required"].as_array().into_iter().flatten() {
            let required = required.as_str().unwrap_or_default();
            if !fields.iter().any(|(name, _)| *name == required) {
                problems.push(format!("{verb} {path}: required field {required} missing"));
            }
        }
        for (name, value) in fields {
            let schema = &form["properties"][*name];
            if schema.is_null() {
                problems.push(format!("{verb} {path}: no field {name} in the description"));
                continue;
            }
            let schema = self.resolve(schema);
            let fits = match schema["type"].as_str() {
                Some("integer") => value.parse::<i64>().is_ok(),
                Some("boolean") => ["true", "false"].contains(value),
                _ => match schema["pattern"].as_str() {
                    Some(pattern) => matches_sid_pattern(pattern, value),
                    None => true,
                },
            };
            let in_enum = schema["enum"]
                .as_array()
                .is_none_or(|values| values.iter().any(|allowed| allowed == value));
            if !fits || !in_enum {
                problems.push(format!(
                    "{verb} {path}: {name}={value:?} does not fit {schema}"
                ));
            }
        }
        problems
    }

    /// What is wrong with the answer `status`, `body` to `verb path`.
    pub fn response_problems(
        &self,
        path: &str,
        verb: &str,
        status: u16,
        body: &Value,
    ) -> Vec<String> {
        let operation = self.operation(path, verb);
        let mut problems = Vec::new();
        let documented = &operation["responses"][status.to_string()];
        let schema = if status >= 400 {
            // Twilio documents its error document once, on the verification create's 429; every
            // error of the API has that shape.
            let error = &self.operation("/v2/Services/{ServiceSid}/Verifications", "post")
                ["responses"]["429"]["content"]["application/json"]["schema"];
            if body["status"] != json!(status) {
                problems.push(format!("the error's status is not {status}: {body}"));
            }
            error
        } else if documented.is_object() {
            if status == 204 {
                return problems;
            }
            &documented["content"]["application/json"]["schema"]
        } else {
            problems.push(format!("{verb} {path} does not answer {status}"));
            return problems;
        };
        self.check_value(schema, body, "$", None, &mut problems);
        problems
    }

    /// Checks `value` against `schema`, strictly: an object has every property its schema
    /// lists and no other.
    fn check_value(
        &self,
        schema: &'static Value,
        value: &Value,
        at: &str,
        schema_name: Option<&str>,
        problems: &mut Vec<String>,
    ) {
        let name = schema["$ref"]
            .as_str()
            .and_then(|reference| reference.rsplit('/').next())
            .or(schema_name);
        let schema = self.resolve(schema);
        if value.is_null() {
            let nullable =
                schema["nullable"].as_bool() == Some(true) || schema.get("type").is_none();
            if !nullable {
                problems.push(format!("{at} is null, which {schema} does not allow"));
            }
            return;
        }
        if let Some(values) = schema["enum"].as_array() {
            if !values.contains(value) {
                problems.push(format!("{at} = {value} is none of {values:?}"));
            }
        }
        let properties = schema["properties"].as_object();
        match (schema["type"].as_str(), properties) {
            (Some("object") | None, Some(properties)) => {
                let Some(object) = value.as_object() else {
                    problems.push(format!("{at} is not an object: {value}"));
                    return;
                };
                for (property, property_schema) in properties {
                    match object.get(property) {
                        None => problems.push(format!("{at}.{property} is missing")),
                        Some(inner) => {
                            let at = format!("{at}.{property}");
                            if property == "status"
                                && name.is_some_and(|name| {
                                    name.starts_with("verify.v2.service.verification")
                                })
                            {
                                self.check_verification_status(inner, &at, problems);
                            }
                            self.check_value(property_schema, inner, &at, None, problems);
                        }
                    }
                }
                for key in object.keys().filter(|key| !properties.contains_key(*key)) {
                    problems.push(format!("{at}.{key} is not in the description"));
                }
            }
            (Some("object"), None) if !value.is_object() => {
                problems.push(format!("{at} is not an object: {value}"));
            }
            (Some("array"), _) => match value.as_array() {
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.check_value(
                            &schema["items"],
                            item,
                            &format!("{at}[{index}]"),
                            None,
                            problems,
                        );
                    }
                }
                None => problems.push(format!("{at} is not an array: {value}")),
            },
            (Some("string"), _) => match value.as_str() {
                Some(text) => {
                    if let Some(pattern) = schema["pattern"].as_str() {
                        if !matches_sid_pattern(pattern, text) {
                            problems.push(format!("{at} = {text:?} does not match {pattern}"));
                        }
                    }
                    match schema["format"].as_str() {
                        Some("date-time")
                            if chrono::DateTime::parse_from_rfc3339(text).is_err() =>
                        {
                            problems.push(format!("{at} = {text:?} is not a date-time"));
                        }
                        Some("uri") if url::Url::parse(text).is_err() => {
                            problems.push(format!("{at} = {text:?} is not a URI"));
                        }
                        _ => {}
                    }
                }
                None => problems.push(format!("{at} is not a string: {value}")),
            },
            (Some("integer"), _) if !value.is_i64() => {
                problems.push(format!("{at} is not an integer: {value}"));
            }
            (Some("boolean"), _) if !value.is_boolean() => {
                problems.push(format!("{at} is not a boolean: {value}"));
            }
            _ => {}
        }
    }

    /// A verification's `status` is a plain string in the description, whose statuses are
    /// listed in the text of `verification_enum_status` (`pending`, `approved`, ...).
    fn check_verification_status(&self, value: &Value, at: &str, problems: &mut Vec<String>) {
        let text = self.description["components"]["schemas"]["verification_enum_status"]
            ["description"]
            .as_str()
            .expect("verification_enum_status is described");
        let statuses: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
        assert!(
            statuses.contains(&"pending"),
            "statuses read from {text:?}: {statuses:?}"
        );
        if !value
            .as_str()
            .is_some_and(|status| statuses.contains(&status))
        {
            problems.push(format!(
                "{at} = {value} is none of the statuses {statuses:?}"
            ));
        }
    }
}

/// The SID patterns of the description (`^VA[0-9a-fA-F]{32}$`): two letters, 32 hexadecimal
/// digits. Any other pattern is not understood, and says so rather than passing.
fn matches_sid_pattern(pattern: &str, text: &str) -> bool {
    let inner = pattern
        .strip_prefix('^')
        .and_then(|rest| rest.strip_suffix('$'))
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    let (prefix, hex) = inner.split_at(2);
    assert_eq!(hex, "[0-9a-fA-F]{32}", "unsupported pattern {pattern}");
    text.len() == 34 && text.starts_with(prefix) && text[2..].chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn the_contract_check_is_skipped_only_off_ci() {
    assert!(under_ci(Some("true")));
    assert!(under_ci(Some("1")));
    assert!(!under_ci(None));
    assert!(!under_ci(Some("")));
    assert!(!under_ci(Some("false")));
    assert!(!under_ci(Some("0")));
}

/// The checker itself: a document it would pass whatever it held proves nothing.
#[test]
fn the_contract_check_catches_a_missing_field_a_wrong_type_an_unknown_status_and_channel() {
    let Some(contract) = Contract::load() else {
        return;
    };
    const CHECK: &str = "/v2/Services/{ServiceSid}/VerificationCheck";
    let good = json!({
        "sid": "VE0190f3b67a1c7d2e8f000123456789ab",
        "service_sid": "VA0190f3b67a1c7d2e8f000123456789ab",
        "account_sid": "AC0123456789abcdef0123456789abcdef",
        "to": "+15551234567",
        "channel": "sms",
        "status": "approved",
        "valid": true,
        "amount": null,
        "payee": null,
        "date_created": "2026-01-01T12:00:00Z",
        "date_updated": "2026-01-01T12:00:05Z",
        "sna_attempts_error_codes": []
    });
    assert_eq!(
        contract.response_problems(CHECK, "post", 200, &good),
        Vec::<String>::new()
    );
    let with = |field: &str, value: Value| {
        let mut bad = good.clone();
        bad[field] = value;
        bad
    };
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("valid");
    for (bad, what) in [
        (missing, "valid is missing"),
        (with("valid", json!("true")), "not a boolean"),
        (with("status", json!("verified")), "none of the statuses"),
        (with("channel", json!("fax")), "none of"),
        (with("sid", json!("VE123")), "does not match"),
        (with("date_created", json!("yesterday")), "not a date-time"),
        (with("extra", json!(1)), "not in the description"),
    ] {
        let problems = contract.response_problems(CHECK, "post", 200, &bad);
        assert!(
            problems.iter().any(|problem| problem.contains(what)),
            "expected `{what}` for {bad}: {problems:?}"
        );
    }
    assert!(!contract
        .response_problems(CHECK, "post", 418, &good)
        .is_empty());
    let error = json!({"code": 20404, "message": "m", "more_info": "u", "status": 404});
    assert!(contract
        .response_problems(CHECK, "post", 404, &error)
        .is_empty());
    assert!(!contract
        .response_problems(CHECK, "post", 400, &error)
        .is_empty());

    const START: &str = "/v2/Services/{ServiceSid}/Verifications";
    assert!(contract
        .request_problems(START, "post", &[("To", "+15551234567"), ("Channel", "sms")])
        .is_empty());
    assert!(!contract
        .request_problems(START, "post", &[("To", "+15551234567")])
        .is_empty());
    assert!(!contract
        .request_problems(
            START,
            "post",
            &[("To", "+1"), ("Channel", "sms"), ("Colour", "x")]
        )
        .is_empty());
    assert!(!contract
        .request_problems(
            "/v2/Services",
            "post",
            &[("FriendlyName", "A"), ("CodeLength", "six")]
        )
        .is_empty());
}
