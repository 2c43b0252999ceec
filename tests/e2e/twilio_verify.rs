//! The Twilio Verify drop-in (`/v2`), driven the way Twilio's SDKs call it: HTTP Basic with an
//! account SID and auth token, form-encoded bodies, the SDKs' paths; every request and answer
//! held to Twilio's description of Verify (`twilio_contract`).

use serde_json::Value;

use crate::support::{code_in, TestApp};
use crate::twilio_contract::Contract;

const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "verify-token-0123456789abcdef";
/// The service's API key `auth` (see `support`), as a Twilio account.
const ACCOUNTS: &str = "auth:ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:verify-token-0123456789abcdef";
const ALICE: &str = "+15551234567";

/// A client as Twilio's SDKs are: `client.verify.v2.services(sid).verifications.create(...)`
/// is a form POST to `{base}/v2/Services/{sid}/Verifications` with Basic auth.
struct VerifyClient<'a> {
    app: &'a TestApp,
    account: &'a str,
    token: &'a str,
    contract: Option<Contract>,
}

impl<'a> VerifyClient<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self::as_account(app, ACCOUNT, TOKEN)
    }

    fn as_account(app: &'a TestApp, account: &'a str, token: &'a str) -> Self {
        Self {
            app,
            account,
            token,
            contract: Contract::load(),
        }
    }

    /// Calls `verb path` (`template` is the description's path of it) with `fields`, and
    /// checks the request and the answer against the description.
    async fn call(
        &self,
        verb: &str,
        template: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        if let Some(contract) = &self.contract {
            let problems = contract.request_problems(template, verb, fields);
            assert!(problems.is_empty(), "the test's own request: {problems:?}");
        }
        let url = format!("{}{path}", self.app.base);
        let request = match verb {
            "get" => self.app.client.get(url),
            "delete" => self.app.client.delete(url),
            _ => self.app.client.post(url).form(fields),
        };
        let response = request
            .basic_auth(self.account, Some(self.token))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        if let Some(contract) = &self.contract {
            let problems = contract.response_problems(template, verb, status, &body);
            assert!(
                problems.is_empty(),
                "{verb} {path} answered {status} {body}: {problems:?}"
            );
        }
        (status, body)
    }

    async fn create_service(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        self.call("post", "/v2/Services", "/v2/Services", fields)
            .await
    }

    async fn start(&self, service: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let path = format!("/v2/Services/{service}/Verifications");
        self.call(
            "post",
            "/v2/Services/{ServiceSid}/Verifications",
            &path,
            fields,
        )
        .await
    }

    async fn check(&self, service: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let path = format!("/v2/Services/{service}/VerificationCheck");
        self.call(
            "post",
            "/v2/Services/{ServiceSid}/VerificationCheck",
            &path,
            fields,
        )
        .await
    }

    async fn fetch(&self, service: &str, verification: &str) -> (u16, Value) {
        let path = format!("/v2/Services/{service}/Verifications/{verification}");
        self.call(
            "get",
            "/v2/Services/{ServiceSid}/Verifications/{Sid}",
            &path,
            &[],
        )
        .await
    }

    async fn update(&self, service: &str, verification: &str, status: &str) -> (u16, Value) {
        let path = format!("/v2/Services/{service}/Verifications/{verification}");
        self.call(
            "post",
            "/v2/Services/{ServiceSid}/Verifications/{Sid}",
            &path,
            &[("Status", status)],
        )
        .await
    }

    /// A new service named `Acme`: its SID.
    async fn acme(&self) -> String {
        let (status, service) = self.create_service(&[("FriendlyName", "Acme")]).await;
        assert_eq!(status, 201, "{service}");
        service["sid"].as_str().unwrap().to_owned()
    }
}

async fn app() -> TestApp {
    let app = TestApp::spawn_with(&[("VERIFY_COMPAT_ACCOUNTS", ACCOUNTS)]).await;
    app.twilio_accepts("SM00000000000000000000000000000027")
        .await;
    app
}

/// The code of the `n`th SMS sent (from 1).
async fn code_sent(app: &TestApp, n: usize) -> String {
    code_in(&app.twilio_requests(n).await[n - 1]["Body"])
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// The `/v1` id of a `VE...` SID: the same UUID, hyphenated.
fn v1_id(verification_sid: &str) -> String {
    uuid_text(&verification_sid[2..])
}

fn uuid_text(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[tokio::test]
async fn an_sdk_client_creates_a_service_starts_checks_and_is_approved_once() {
    let app = app().await;
    let client = VerifyClient::new(&app);

    let (status, service) = client
        .create_service(&[("FriendlyName", "Acme Bank"), ("CodeLength", "8")])
        .await;
    assert_eq!(status, 201, "{service}");
    let service_sid = service["sid"].as_str().unwrap().to_owned();
    assert!(service_sid.starts_with("VA"), "{service}");
    assert_eq!(service["account_sid"], ACCOUNT);
    assert_eq!(service["friendly_name"], "Acme Bank");
    assert_eq!(service["code_length"], 8);
    assert_eq!(
        service["url"],
        format!("{}/v2/Services/{service_sid}", app.base)
    );
    let (status, fetched) = client
        .call(
            "get",
            "/v2/Services/{Sid}",
            &format!("/v2/Services/{service_sid}"),
            &[],
        )
        .await;
    assert_eq!((status, &fetched), (200, &service));
    let (status, list) = client
        .call("get", "/v2/Services", "/v2/Services", &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["services"][0]["sid"], service_sid.as_str());
    assert_eq!(list["meta"]["next_page_url"], Value::Null);

    let (status, started) = client
        .start(&service_sid, &[("To", ALICE), ("Channel", "sms")])
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["status"], "pending");
    assert_eq!(started["valid"], false);
    assert_eq!(started["to"], ALICE);
    assert_eq!(started["channel"], "sms");
    assert_eq!(started["service_sid"], service_sid.as_str());
    let verification_sid = started["sid"].as_str().unwrap().to_owned();
    let code = code_sent(&app, 1).await;
    assert_eq!(code.len(), 8, "the service's code length");

    // The same verification through /v1, under the API key the account stands for.
    let (status, through_v1) = app
        .get(&format!("/v1/verifications/{}", v1_id(&verification_sid)))
        .await;
    assert_eq!(status, 200, "{through_v1}");
    assert_eq!(through_v1["status"], "pending");
    assert_eq!(through_v1["to"], "+1555***4567");

    let wrong_code = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let (status, check) = client
        .check(&service_sid, &[("To", ALICE), ("Code", wrong_code)])
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "pending");
    assert_eq!(check["valid"], false);

    let (status, check) = client
        .check(&service_sid, &[("To", ALICE), ("Code", &code)])
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "approved");
    assert_eq!(check["valid"], true);
    assert_eq!(check["sid"], verification_sid.as_str());

    // Approved is final: the same code again, by number or by SID, finds nothing.
    for fields in [
        [("To", ALICE), ("Code", code.as_str())],
        [
            ("VerificationSid", verification_sid.as_str()),
            ("Code", code.as_str()),
        ],
    ] {
        let (status, again) = client.check(&service_sid, &fields).await;
        assert_eq!(status, 404, "{again}");
        assert_eq!(again["code"], 20404);
        assert_eq!(
            again["more_info"],
            "https://www.twilio.com/docs/errors/20404"
        );
    }
    let (status, gone) = client.fetch(&service_sid, &verification_sid).await;
    assert_eq!(
        (status, gone["code"].clone()),
        (404, 20404.into()),
        "{gone}"
    );
    let (_, through_v1) = app
        .get(&format!("/v1/verifications/{}", v1_id(&verification_sid)))
        .await;
    assert_eq!(through_v1["status"], "approved");
}

#[tokio::test]
async fn the_check_after_the_last_attempt_is_60202_and_the_right_code_no_longer_approves() {
    let app = app().await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    let (_, started) = client
        .start(&service, &[("To", ALICE), ("Channel", "sms")])
        .await;
    let verification_sid = started["sid"].as_str().unwrap();
    let code = code_sent(&app, 1).await;

    for attempt in 1..=5 {
        let (status, check) = client
            .check(
                &service,
                &[
                    ("VerificationSid", verification_sid),
                    ("Code", wrong(&code)),
                ],
            )
            .await;
        assert_eq!(status, 200, "{check}");
        assert_eq!(check["valid"], false);
        let expected = if attempt == 5 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!(check["status"], expected, "attempt {attempt}");
    }
    let (status, refused) = client
        .check(
            &service,
            &[("VerificationSid", verification_sid), ("Code", &code)],
        )
        .await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["code"], 60202);
    assert!(!refused.to_string().contains("approved"), "{refused}");
}

#[tokio::test]
async fn a_second_start_is_a_resend_within_the_limits_twilio_answers_with() {
    let app = TestApp::spawn_with(&[
        ("VERIFY_COMPAT_ACCOUNTS", ACCOUNTS),
        ("VERIFY_MAX_SENDS", "2"),
        ("VERIFY_RESEND_INTERVAL_SECONDS", "1"),
    ])
    .await;
    app.twilio_accepts("SM00000000000000000000000000000028")
        .await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    let start = [("To", ALICE), ("Channel", "sms")];
    let (_, first) = client.start(&service, &start).await;

    // Too soon after the first code: Twilio's rate limit, with when to try again.
    let (status, too_soon) = client.start(&service, &start).await;
    assert_eq!(status, 429, "{too_soon}");
    assert_eq!(too_soon["code"], 20429);

    // Past the interval: the same verification, with a new code; the first stays valid.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let resent = loop {
        let (status, resent) = client.start(&service, &start).await;
        if status == 201 {
            break resent;
        }
        assert!(std::time::Instant::now() < deadline, "{resent}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(resent["sid"], first["sid"]);
    assert_eq!(resent["send_code_attempts"].as_array().unwrap().len(), 2);
    let first_code = code_sent(&app, 1).await;
    assert_eq!(app.twilio_requests(2).await.len(), 2);

    // Out of sends for this verification: 60203.
    let (status, refused) = client.start(&service, &start).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["code"], 60203);

    let (_, check) = client
        .check(&service, &[("To", ALICE), ("Code", &first_code)])
        .await;
    assert_eq!(check["status"], "approved", "{check}");
}

#[tokio::test]
async fn a_canceled_verification_takes_no_check_and_is_no_longer_found() {
    let app = app().await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    let (_, started) = client
        .start(&service, &[("To", ALICE), ("Channel", "sms")])
        .await;
    let verification_sid = started["sid"].as_str().unwrap();
    let (status, fetched) = client.fetch(&service, verification_sid).await;
    assert_eq!(
        (status, &fetched["sid"]),
        (200, &started["sid"]),
        "{fetched}"
    );

    let (status, canceled) = client.update(&service, verification_sid, "canceled").await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let code = code_sent(&app, 1).await;
    let (status, check) = client
        .check(
            &service,
            &[("VerificationSid", verification_sid), ("Code", &code)],
        )
        .await;
    assert_eq!(
        (status, check["code"].clone()),
        (404, 20404.into()),
        "{check}"
    );
    let (status, _) = client.update(&service, verification_sid, "approved").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn what_the_service_does_not_offer_is_refused_as_an_invalid_parameter() {
    let app = app().await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    for (fields, parameter) in [
        (vec![("To", ALICE), ("Channel", "call")], "Channel"),
        (vec![("To", ALICE), ("Channel", "email")], "Channel"),
        (vec![("To", "not a number"), ("Channel", "sms")], "To"),
        (
            vec![
                ("To", ALICE),
                ("Channel", "sms"),
                ("Amount", "-39.99"),
                ("Payee", "Acme"),
            ],
            "Amount",
        ),
        (
            vec![
                ("To", ALICE),
                ("Channel", "sms"),
                ("RateLimits", "{\"end_user_ip_address\":\"1.2.3.4\"}"),
            ],
            "RateLimits",
        ),
        (
            vec![("To", ALICE), ("Channel", "sms"), ("CustomCode", "123456")],
            "CustomCode",
        ),
    ] {
        let (status, refused) = client.start(&service, &fields).await;
        assert_eq!(status, 400, "{fields:?}: {refused}");
        assert_eq!(refused["code"], 60200, "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(parameter),
            "{refused}"
        );
    }
    let (status, refused) = client
        .create_service(&[("FriendlyName", "Acme"), ("Psd2Enabled", "true")])
        .await;
    assert_eq!((status, refused["code"].clone()), (400, 60200.into()));
    let (status, refused) = client
        .create_service(&[("FriendlyName", "https://acme.example/login")])
        .await;
    assert_eq!((status, refused["code"].clone()), (400, 60200.into()));
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn only_the_accounts_credentials_reach_its_services() {
    let app = TestApp::spawn_with(&[(
        "VERIFY_COMPAT_ACCOUNTS",
        "auth:ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:verify-token-0123456789abcdef,\
         auth:ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:other-token-0123456789abcdef",
    )])
    .await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;

    let wrong_token = VerifyClient::as_account(&app, ACCOUNT, "verify-token-0123456789abcdeX");
    let (status, refused) = wrong_token.create_service(&[("FriendlyName", "X")]).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (401, 20003.into()),
        "{refused}"
    );
    let unauthenticated = app
        .client
        .get(format!("{}/v2/Services", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        unauthenticated.headers()["www-authenticate"],
        "Basic realm=\"Twilio API\""
    );

    // What is not a route, or not a method of one, answers in Twilio's words too.
    for (verb, path, status, code) in [
        ("GET", format!("/v2/Services/{service}/Nothing"), 404, 20404),
        (
            "DELETE",
            format!("/v2/Services/{service}/VerificationCheck"),
            405,
            20004,
        ),
    ] {
        let response = app
            .client
            .request(verb.parse().unwrap(), format!("{}{path}", app.base))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{verb} {path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            (error["code"].clone(), error["status"].clone()),
            (code.into(), status.into())
        );
    }

    // Another account sees none of this one's services.
    let other = VerifyClient::as_account(
        &app,
        "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "other-token-0123456789abcdef",
    );
    let (status, list) = other.call("get", "/v2/Services", "/v2/Services", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(list["services"], serde_json::json!([]));
    let (status, refused) = other
        .start(&service, &[("To", ALICE), ("Channel", "sms")])
        .await;
    assert_eq!(
        (status, refused["code"].clone()),
        (404, 20404.into()),
        "{refused}"
    );
}

#[tokio::test]
async fn without_verify_compat_accounts_v2_is_not_served() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(format!("{}/v2/Services", app.base))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&[("FriendlyName", "Acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn channel_call_places_a_voice_call_when_a_provider_places_calls() {
    const CALLS_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";
    let app = TestApp::spawn_with(&[
        ("VERIFY_COMPAT_ACCOUNTS", ACCOUNTS),
        ("TWILIO_VOICE_FROM", "+15005550009"),
    ])
    .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path(CALLS_PATH))
        .respond_with(
            wiremock::ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "sid": "CA0123456789abcdef0123456789abcdef", "status": "queued",
                "price": null, "price_unit": "USD"
            })),
        )
        .expect(1)
        .mount(&app.twilio)
        .await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;

    let (status, started) = client
        .start(&service, &[("To", ALICE), ("Channel", "call")])
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["channel"], "call");
    let call = &app.twilio_requests(1).await[0];
    assert_eq!(call["To"], ALICE);
    assert!(call.contains_key("Twiml"), "{call:?}");
}

#[tokio::test]
async fn the_code_message_names_the_service_or_the_custom_friendly_name_as_twilio_does() {
    let app = app().await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    let (status, started) = client
        .start(&service, &[("To", ALICE), ("Channel", "sms")])
        .await;
    assert_eq!(status, 201, "{started}");
    let first = app.twilio_requests(1).await[0]["Body"].clone();
    assert!(first.contains("Acme"), "{first}");
    assert!(!first.contains("Smarter Firms"), "{first}");

    let (status, started) = client
        .start(
            &service,
            &[
                ("To", "+15551230077"),
                ("Channel", "sms"),
                ("CustomFriendlyName", "Acme Pay"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let second = app.twilio_requests(2).await[1]["Body"].clone();
    assert!(second.contains("Acme Pay"), "{second}");
}

#[tokio::test]
async fn psd2_amount_and_payee_are_named_bound_to_the_code_and_shown_as_twilio_shows_them() {
    let app = app().await;
    let client = VerifyClient::new(&app);
    let service = client.acme().await;
    let (status, started) = client
        .start(
            &service,
            &[
                ("To", ALICE),
                ("Channel", "sms"),
                ("Amount", "€39.99"),
                ("Payee", "Acme Inc."),
            ],
        )
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["amount"], "€39.99", "{started}");
    assert_eq!(started["payee"], "Acme Inc.", "{started}");
    let verification_sid = started["sid"].as_str().unwrap();
    let body = app.twilio_requests(1).await[0]["Body"].clone();
    assert!(
        body.starts_with("Your Acme code to pay 39.99 EUR to Acme Inc. is: "),
        "{body}"
    );
    let code = code_sent(&app, 1).await;

    // Another amount, or none, is a wrong code; one of the pair alone is Twilio's 60206.
    for fields in [
        vec![
            ("To", ALICE),
            ("Code", code.as_str()),
            ("Amount", "€39.98"),
            ("Payee", "Acme Inc."),
        ],
        vec![
            ("To", ALICE),
            ("Code", code.as_str()),
            ("Amount", "£39.99"),
            ("Payee", "Acme Inc."),
        ],
        vec![("To", ALICE), ("Code", code.as_str())],
    ] {
        let (status, check) = client.check(&service, &fields).await;
        assert_eq!(status, 200, "{fields:?}: {check}");
        assert_eq!(
            (&check["status"], &check["valid"]),
            (&"pending".into(), &false.into())
        );
    }
    let (status, refused) = client
        .check(
            &service,
            &[("To", ALICE), ("Code", &code), ("Amount", "€39.99")],
        )
        .await;
    assert_eq!(
        (status, refused["code"].clone()),
        (400, 60206.into()),
        "{refused}"
    );

    // The same amount written another way approves, and the answer shows the payment.
    let (status, check) = client
        .check(
            &service,
            &[
                ("VerificationSid", verification_sid),
                ("Code", &code),
                ("Amount", "39.990 EUR"),
                ("Payee", "Acme Inc."),
            ],
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "approved", "{check}");
    assert_eq!(
        (&check["amount"], &check["payee"]),
        (&"€39.99".into(), &"Acme Inc.".into())
    );

    let (status, refused) = client
        .start(
            &service,
            &[
                ("To", "+15557654321"),
                ("Channel", "whatsapp"),
                ("Amount", "5"),
                ("Payee", "Acme"),
            ],
        )
        .await;
    assert_eq!(
        (status, refused["code"].clone()),
        (400, 60200.into()),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("`Channel`"),
        "{refused}"
    );
}
