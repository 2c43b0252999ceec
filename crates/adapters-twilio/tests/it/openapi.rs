//! The adapter against Twilio's own API description (`twilio_api_v2010.json` from
//! twilio-oai), read where it lies: `TWILIO_OAI_DIR`, or `../shared/twilio-oai` next to the
//! workspace. Every form field the adapter sends must be one the Messages create operation
//! defines, and a `201` built from the Message schema must parse. Without the file each test
//! fails under CI (`CI=true`, as CI services set it), so that a missing description cannot pass
//! there unnoticed; elsewhere each says on stderr that it skipped.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use adapters_twilio::{TwilioConfig, TwilioCredentials, TwilioSender, TwilioSmsProvider};
use domain::Channel;
use ports::{Price, ProviderReceipt, SentMessageSearch, SmsProvider, StatusLookup};
use secrecy::SecretString;
use serde_json::{json, Map, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::calls::{call, calling_provider, calls_path, created_call, CALL_SID};
use crate::{config_for, created_json, messages_path, sms, ACCOUNT_SID};

const MESSAGES_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";
const ACCOUNT_PATH: &str = "/2010-04-01/Accounts/{Sid}.json";
const MESSAGE_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json";
const CALLS_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Calls.json";
const CALL_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json";

fn description_path() -> PathBuf {
    match std::env::var_os("TWILIO_OAI_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/twilio-oai"),
    }
    .join("twilio_api_v2010.json")
}

/// What a test does when Twilio's description is absent.
#[derive(Debug, PartialEq)]
enum WhenMissing {
    /// On a developer's machine: say so and pass.
    Skip,
    /// Under CI: a contract test that never ran must not look like one that passed.
    Fail,
}

/// `CI` as CI services set it (`true`); unset, empty, `false` or `0` is a developer's machine.
fn when_missing(ci: Option<&str>) -> WhenMissing {
    match ci.map(str::trim) {
        None | Some("" | "0") => WhenMissing::Skip,
        Some(value) if value.eq_ignore_ascii_case("false") => WhenMissing::Skip,
        Some(_) => WhenMissing::Fail,
    }
}

#[test]
fn a_missing_description_fails_under_ci_and_is_skipped_elsewhere() {
    assert_eq!(when_missing(Some("true")), WhenMissing::Fail);
    assert_eq!(when_missing(Some("1")), WhenMissing::Fail);
    assert_eq!(when_missing(Some("TRUE")), WhenMissing::Fail);
    assert_eq!(when_missing(None), WhenMissing::Skip);
    assert_eq!(when_missing(Some("")), WhenMissing::Skip);
    assert_eq!(when_missing(Some("false")), WhenMissing::Skip);
    assert_eq!(when_missing(Some("0")), WhenMissing::Skip);
}

/// Twilio's API description, parsed once. When the file is absent, every caller says so on
/// stderr and gets `None`, or fails under CI (see [`when_missing`]).
fn description() -> Option<&'static Value> {
    static DESCRIPTION: OnceLock<Result<Value, PathBuf>> = OnceLock::new();
    let loaded = DESCRIPTION.get_or_init(|| {
        let path = description_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(serde_json::from_str(&text).expect("twilio_api_v2010.json is JSON")),
            Err(_) => Err(path),
        }
    });
    let path = match loaded {
        Ok(description) => return Some(description),
        Err(path) => path,
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("an openapi test")
        .to_owned();
    let absent = format!(
        "Twilio's OpenAPI description is not at {} (set TWILIO_OAI_DIR)",
        path.display()
    );
    match when_missing(std::env::var("CI").ok().as_deref()) {
        WhenMissing::Fail => panic!("{test} cannot run under CI: {absent}"),
        WhenMissing::Skip => {
            eprintln!("skipped {test}: {absent}");
            None
        }
    }
}

fn operation<'a>(description: &'a Value, path: &str, verb: &str) -> &'a Value {
    let operation = &description["paths"][path][verb];
    assert!(
        operation.is_object(),
        "the description has no {verb} {path}"
    );
    operation
}

/// Follows a `$ref` into `components/schemas`.
fn resolve<'a>(description: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("a local schema reference");
            &description["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// The form fields the Messages create operation defines.
fn create_message_fields(description: &Value) -> Vec<String> {
    create_fields(description, MESSAGES_PATH)
}

/// The form fields the create operation of `path` defines.
fn create_fields(description: &Value, path: &str) -> Vec<String> {
    let form = &operation(description, path, "post")["requestBody"]["content"]
        ["application/x-www-form-urlencoded"]["schema"];
    let properties = resolve(description, form)["properties"]
        .as_object()
        .expect("CreateMessageRequest has properties");
    properties.keys().cloned().collect()
}

/// The 201 schema of the Messages create operation.
fn message_schema(description: &Value) -> &Value {
    let schema = &operation(description, MESSAGES_PATH, "post")["responses"]["201"]["content"]
        ["application/json"]["schema"];
    resolve(description, schema)
}

/// A value of the shape `schema` describes: an enum's first value, a SID of the pattern's
/// type, a plausible string for the declared format, `"1"` for other strings (Twilio's numbers
/// in strings: `num_segments`, `price`).
fn value_for(description: &Value, schema: &Value) -> Value {
    let schema = resolve(description, schema);
    if let Some(first) = schema["enum"].get(0) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("integer") => json!(30003),
        Some("object") => json!({}),
        Some("string") => {
            if let Some(pattern) = schema["pattern"].as_str() {
                // `^AC[0-9a-fA-F]{32}$` or `^(SM|MM)[0-9a-fA-F]{32}$`: the first type prefix.
                let prefix: String = pattern
                    .trim_start_matches(['^', '('])
                    .chars()
                    .take(2)
                    .collect();
                return json!(format!("{prefix}{}", "0123456789abcdef".repeat(2)));
            }
            match schema["format"].as_str() {
                Some("phone-number") => json!("+14155552345"),
                Some("currency") => json!("USD"),
                Some("date-time-rfc-2822") => json!("Thu, 24 Aug 2023 05:01:45 +0000"),
                _ => json!("1"),
            }
        }
        other => panic!("no value for a schema of type {other:?}"),
    }
}

/// Sends `message` through `provider` to a server that accepts anything, and returns the names
/// of the form fields it received.
async fn sent_field_names(
    server: &MockServer,
    provider: TwilioSmsProvider,
    message: ports::OutboundMessage,
) -> Vec<String> {
    server.reset().await;
    Mock::given(method("POST"))
        .and(path(messages_path(ACCOUNT_SID)))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_json()))
        .expect(1)
        .mount(server)
        .await;
    provider.send(&message).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .map(|(name, _)| name)
        .collect()
}

#[tokio::test]
async fn every_form_field_the_adapter_sends_is_defined_by_the_create_operation() {
    let Some(description) = description() else {
        return;
    };
    let defined = create_message_fields(description);
    let server = MockServer::start().await;
    let with_everything = TwilioConfig {
        status_callback_url: Some(
            "https://notify.example.com/v1/webhooks/twilio/status"
                .parse()
                .unwrap(),
        ),
        ..config_for(&server)
    };
    let through_a_service = TwilioConfig {
        sender: TwilioSender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
        credentials: TwilioCredentials::ApiKey {
            sid: "SK0123456789abcdef0123456789abcdef".into(),
            secret: SecretString::from("secret"),
        },
        ..with_everything.clone()
    };
    let mut code = sms("Your code is 123456");
    code.validity = Some(Duration::from_secs(600));
    code.sensitive = true;
    let mut whatsapp = code.clone();
    whatsapp.channel = Channel::Whatsapp;
    let mut whatsapp_template = whatsapp.clone();
    whatsapp_template.body = r#"{"1":"123456"}"#.into();
    whatsapp_template.content_sid = Some("HX0123456789abcdef0123456789abcdef".into());

    let mut sent = Vec::new();
    for config in [with_everything, through_a_service] {
        for message in [
            sms("hi"),
            code.clone(),
            whatsapp.clone(),
            whatsapp_template.clone(),
        ] {
            let provider = TwilioSmsProvider::new(config.clone()).unwrap();
            sent.extend(sent_field_names(&server, provider, message).await);
        }
    }

    sent.sort();
    sent.dedup();
    assert_eq!(
        sent,
        [
            "Body",
            "ContentSid",
            "ContentVariables",
            "From",
            "MessagingServiceSid",
            "StatusCallback",
            "To",
            "ValidityPeriod"
        ],
        "the variants above send every field the adapter knows"
    );
    let undefined: Vec<&String> = sent.iter().filter(|name| !defined.contains(name)).collect();
    assert!(
        undefined.is_empty(),
        "fields the create operation does not define: {undefined:?}"
    );
}

/// A call sends only fields the Calls create operation defines, its required ones among them.
#[tokio::test]
async fn every_form_field_of_a_call_is_defined_by_the_calls_create_operation() {
    let Some(description) = description() else {
        return;
    };
    let defined = create_fields(description, CALLS_PATH);
    let form = &operation(description, CALLS_PATH, "post")["requestBody"]["content"]
        ["application/x-www-form-urlencoded"]["schema"];
    let required: Vec<&str> = form["required"]
        .as_array()
        .expect("the create operation requires fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(calls_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(created_call()))
        .expect(1)
        .mount(&server)
        .await;
    calling_provider(&server)
        .send(&call("Your code is: 1, 2, 3.", Some("de")))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let mut sent: Vec<String> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .map(|(name, _)| name)
        .collect();
    sent.sort();

    assert_eq!(sent, ["From", "StatusCallback", "To", "Twiml"]);
    let undefined: Vec<&String> = sent.iter().filter(|name| !defined.contains(name)).collect();
    assert!(
        undefined.is_empty(),
        "fields the operation does not define: {undefined:?}"
    );
    for field in required {
        assert!(sent.iter().any(|name| name == field), "{field} is required");
    }
}

#[tokio::test]
async fn every_created_call_example_in_the_description_is_read() {
    let Some(description) = description() else {
        return;
    };
    let examples = operation(description, CALLS_PATH, "post")["responses"]["201"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("the create operation has examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(calls_path()))
            .respond_with(ResponseTemplate::new(201).set_body_json(example["value"].clone()))
            .expect(1)
            .mount(&server)
            .await;

        let receipt = calling_provider(&server)
            .send(&call("Your code is: 1, 2, 3.", None))
            .await
            .unwrap();

        assert_eq!(
            receipt.provider_sid,
            example["value"]["sid"].as_str().unwrap(),
            "{name}"
        );
    }
}

/// Every status the Call schema lists reads, from a lookup and from a callback alike.
#[tokio::test]
async fn every_status_the_call_schema_lists_is_read() {
    let Some(description) = description() else {
        return;
    };
    let schema = &operation(description, CALL_PATH, "get")["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let status = resolve(
        description,
        &resolve(description, schema)["properties"]["status"],
    );
    let statuses = status["enum"].as_array().expect("the status is an enum");
    assert!(!statuses.is_empty());
    let server = MockServer::start().await;
    let provider = calling_provider(&server);
    for status in statuses {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
            )))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"sid": CALL_SID, "status": status})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let event = provider.lookup(CALL_SID, chrono::Utc::now()).await;
        assert!(event.is_ok(), "{status}: {event:?}");
        let callback = [
            ("CallSid".to_owned(), CALL_SID.to_owned()),
            ("CallStatus".to_owned(), status.as_str().unwrap().to_owned()),
        ];
        let parsed = adapters_twilio::parse_status_callback(&callback, chrono::Utc::now());
        assert!(parsed.is_ok(), "{status}: {parsed:?}");
    }
}

async fn receipt_for(body: Value) -> ProviderReceipt {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path(ACCOUNT_SID)))
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    TwilioSmsProvider::new(config_for(&server))
        .unwrap()
        .send(&sms("hi"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_created_message_built_from_every_schema_field_is_parsed() {
    let Some(description) = description() else {
        return;
    };
    let properties = message_schema(description)["properties"]
        .as_object()
        .expect("the Message schema has properties");
    let body: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| (name.clone(), value_for(description, schema)))
        .collect();
    let sid = body["sid"].as_str().unwrap().to_owned();

    let receipt = receipt_for(Value::Object(body)).await;

    assert_eq!(
        receipt,
        ProviderReceipt {
            provider: "twilio",
            provider_sid: sid,
            segments: Some(1),
            price: Some(Price {
                amount: "-1.00".into(),
                currency: "USD".into(),
            }),
        }
    );
}

#[tokio::test]
async fn a_created_message_with_every_nullable_field_null_but_its_sid_is_parsed() {
    let Some(description) = description() else {
        return;
    };
    let properties = message_schema(description)["properties"]
        .as_object()
        .expect("the Message schema has properties");
    let mut body: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| {
            let value = if schema["nullable"] == json!(true) {
                Value::Null
            } else {
                value_for(description, schema)
            };
            (name.clone(), value)
        })
        .collect();
    body.insert("sid".into(), json!("SM0123456789abcdef0123456789abcdef"));

    let receipt = receipt_for(Value::Object(body)).await;

    assert_eq!(receipt.provider_sid, "SM0123456789abcdef0123456789abcdef");
    assert_eq!(receipt.segments, None);
    assert_eq!(receipt.price, None);
}

#[tokio::test]
async fn every_created_message_example_in_the_description_is_parsed() {
    let Some(description) = description() else {
        return;
    };
    let examples = operation(description, MESSAGES_PATH, "post")["responses"]["201"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("the create operation has examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let body = example["value"].clone();

        let receipt = receipt_for(body.clone()).await;

        assert_eq!(
            receipt.provider_sid,
            body["sid"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn every_account_example_in_the_description_passes_the_credentials_check() {
    let Some(description) = description() else {
        return;
    };
    let examples = operation(description, ACCOUNT_PATH, "get")["responses"]["200"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("the account fetch has examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json")))
            .respond_with(ResponseTemplate::new(200).set_body_json(example["value"].clone()))
            .expect(1)
            .mount(&server)
            .await;

        let account = TwilioSmsProvider::new(config_for(&server))
            .unwrap()
            .check_credentials()
            .await;

        assert!(account.is_ok(), "{name}: {account:?}");
    }
}

#[tokio::test]
async fn every_fetched_message_example_in_the_description_is_looked_up() {
    let Some(description) = description() else {
        return;
    };
    let examples = operation(description, MESSAGE_PATH, "get")["responses"]["200"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("the message fetch has examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let sid = example["value"]["sid"].as_str().unwrap().to_owned();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!(
                "/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(example["value"].clone()))
            .expect(1)
            .mount(&server)
            .await;

        let event = TwilioSmsProvider::new(config_for(&server))
            .unwrap()
            .lookup(&sid, chrono::Utc::now())
            .await;

        assert!(event.is_ok(), "{name}: {event:?}");
    }
}

/// The search for an unanswered message asks only with the list operation's parameters, and
/// reads only fields its Message schema defines.
#[tokio::test]
async fn the_sent_message_search_uses_the_list_operations_parameters_and_fields() {
    let Some(description) = description() else {
        return;
    };
    let list = operation(description, MESSAGES_PATH, "get");
    let defined: Vec<&str> = list["parameters"]
        .as_array()
        .expect("the list has parameters")
        .iter()
        .filter(|parameter| parameter["in"] == "query")
        .filter_map(|parameter| parameter["name"].as_str())
        .collect();
    let page = resolve(
        description,
        &list["responses"]["200"]["content"]["application/json"]["schema"],
    );
    assert!(
        page["properties"]["messages"].is_object(),
        "a page holds `messages`"
    );
    let fields = &message_schema(description)["properties"];
    for field in [
        "sid",
        "body",
        "date_created",
        "num_segments",
        "price",
        "price_unit",
    ] {
        assert!(
            fields[field].is_object(),
            "the Message schema has no `{field}`"
        );
    }
    assert_eq!(fields["date_created"]["format"], "date-time-rfc-2822");

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(messages_path(ACCOUNT_SID)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "messages": [] })))
        .expect(1)
        .mount(&server)
        .await;
    let found = TwilioSmsProvider::new(config_for(&server))
        .unwrap()
        .find_sent(&sms("hi"), chrono::Utc::now(), chrono::Utc::now())
        .await;
    assert_eq!(found, Ok(None));
    let requests = server.received_requests().await.unwrap();
    let mut sent: Vec<String> = requests[0]
        .url
        .query_pairs()
        .map(|(name, _)| name.into_owned())
        .collect();
    sent.sort();
    assert_eq!(sent, ["From", "PageSize", "To"]);
    let undefined: Vec<&String> = sent
        .iter()
        .filter(|name| !defined.contains(&name.as_str()))
        .collect();
    assert!(
        undefined.is_empty(),
        "parameters the list operation does not define: {undefined:?}"
    );
}

#[tokio::test]
async fn every_status_the_message_schema_lists_is_read() {
    let Some(description) = description() else {
        return;
    };
    let status = resolve(
        description,
        &message_schema(description)["properties"]["status"],
    );
    let statuses = status["enum"].as_array().expect("the status is an enum");
    let server = MockServer::start().await;
    let provider = TwilioSmsProvider::new(config_for(&server)).unwrap();
    let sid = "SM0123456789abcdef0123456789abcdef";
    for status in statuses {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"sid": sid, "status": status})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let event = provider.lookup(sid, chrono::Utc::now()).await;
        // Inbound statuses are not ours to look up; every outbound one must read.
        let inbound = matches!(status.as_str(), Some("receiving" | "received"));
        assert_eq!(event.is_ok(), !inbound, "{status}: {event:?}");
    }
}
