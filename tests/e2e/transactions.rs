//! Codes that confirm a payment (PSD2 dynamic linking), as the payer and the client see them:
//! the SMS or call names the amount and the payee in the payer's language, and only a check
//! presenting that amount (as a number), currency and payee approves.

use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, ResponseTemplate};
use wiremock_form::Form;

use crate::channels::{spoken_code, spoken_digits};
use crate::support::{TestApp, ACCOUNT_SID, AUTH_TOKEN, FROM, MESSAGES_PATH};

const FRENCH_NUMBER: &str = "+33612345678";
const FRENCH_OPENING: &str = "Smarter Firms : paiement de 49.90 EUR à Café Zoë. Code : ";

/// Twilio accepts exactly one SMS: to the French number, from the service's number, the
/// French transaction text, a validity period.
async fn twilio_expects_the_french_payment_code(app: &TestApp) {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[("To", FRENCH_NUMBER), ("From", FROM)])
                .field_where("Body", |body| body.starts_with(FRENCH_OPENING))
                .any("ValidityPeriod"),
        )
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM00000000000000000000000000000281", "status": "queued",
            "num_segments": "1", "price": null, "price_unit": "USD",
            "error_code": null, "error_message": null
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;
}

fn payment(to: &str) -> Value {
    json!({"to": to, "amount": "49.90", "currency": "EUR", "payee": "Café Zoë"})
}

async fn check(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/v1/verifications/{id}/check"), body)
        .await
}

#[tokio::test]
async fn a_french_payment_code_names_the_payment_and_approves_only_with_it() {
    let app = TestApp::spawn().await;
    twilio_expects_the_french_payment_code(&app).await;

    let (status, started) = app.post("/v1/verifications", payment(FRENCH_NUMBER)).await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["locale"], "fr", "{started}");
    assert_eq!(
        (&started["amount"], &started["currency"], &started["payee"]),
        (&json!("49.90"), &json!("EUR"), &json!("Café Zoë")),
        "{started}"
    );
    let body = app.twilio_requests(1).await[0]["Body"].clone();
    assert!(body.starts_with(FRENCH_OPENING), "{body}");
    assert!(
        body.ends_with(", valable 10 min. Ne le communiquez pas."),
        "{body}"
    );
    let code: String = body[FRENCH_OPENING.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6, "{body}");
    let id = started["id"].as_str().unwrap();

    // The right code for another amount, or without the payment, is a wrong code: counted.
    for (attempts_left, presented) in [
        (
            4,
            json!({"code": code, "amount": "49.91", "currency": "EUR", "payee": "Café Zoë"}),
        ),
        (
            3,
            json!({"code": code, "amount": "49.90", "currency": "CHF", "payee": "Café Zoë"}),
        ),
        (
            2,
            json!({"code": code, "amount": "49.90", "currency": "EUR", "payee": "Cafe Zoe"}),
        ),
        (1, json!({"code": code})),
    ] {
        let (status, checked) = check(&app, id, presented.clone()).await;
        assert_eq!(status, 200, "{presented}: {checked}");
        assert_eq!(
            checked,
            json!({"status": "pending", "valid": false, "attempts_left": attempts_left}),
            "{presented}"
        );
    }
    // The same amount written another way is the same amount.
    let (status, checked) = check(
        &app,
        id,
        json!({"code": code, "amount": "49.9", "currency": "EUR", "payee": "Café Zoë"}),
    )
    .await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["status"], "approved", "{checked}");
    assert_eq!(checked["valid"], true);

    let (_, shown) = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["amount"], "49.90", "{shown}");
    assert_eq!(shown["payee"], "Café Zoë", "{shown}");
}

#[tokio::test]
async fn a_payment_call_says_the_amount_and_the_payee_and_its_code_approves_with_them() {
    const TO: &str = "+447700900123";
    const VOICE_FROM: &str = "+15005550009";
    let app = TestApp::spawn_with(&[("TWILIO_VOICE_FROM", VOICE_FROM)]).await;
    Mock::given(method("POST"))
        .and(path(
            "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json",
        ))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(
            Form::exactly(&[("To", TO), ("From", VOICE_FROM)]).field_where("Twiml", |twiml| {
                twiml.starts_with("<?xml") && twiml.ends_with("</Response>")
            }),
        )
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "CA0123456789abcdef0123456789abcd28", "status": "queued", "price": null,
            "price_unit": "USD"
        })))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({"to": TO, "channel": "voice", "amount": "1250", "currency": "GBP",
                   "payee": "Acme Travel"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let twiml = app.twilio_requests(1).await[0]["Twiml"].clone();
    assert!(
        twiml.contains("To confirm your payment of 1250 GBP to Acme Travel, your code is: "),
        "{twiml}"
    );
    let code = spoken_code(&twiml);
    assert_eq!(code.len(), 6, "{twiml}");
    assert_eq!(twiml.matches(&spoken_digits(&code)).count(), 2, "{twiml}");

    let id = started["id"].as_str().unwrap();
    let (_, wrong) = check(
        &app,
        id,
        json!({"code": code, "amount": "125.0", "currency": "GBP", "payee": "Acme Travel"}),
    )
    .await;
    assert_eq!(wrong["status"], "pending", "{wrong}");
    let (_, right) = check(
        &app,
        id,
        json!({"code": code, "amount": "1250.00", "currency": "GBP", "payee": "Acme Travel"}),
    )
    .await;
    assert_eq!(right["status"], "approved", "{right}");
}

#[tokio::test]
async fn whatsapp_cannot_carry_a_payment_and_is_refused_saying_why_before_anything_is_sent() {
    let app = TestApp::spawn_with(&[
        (
            "TWILIO_WHATSAPP_CONTENT_SIDS",
            "en:HX0123456789abcdef0123456789abcdef",
        ),
        ("TWILIO_WHATSAPP_FROM", "+15005550010"),
    ])
    .await;
    let mut request = payment("+447700900123");
    request["channel"] = json!("whatsapp");

    let (status, problem) = app.post("/v1/verifications", request).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "channel");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("channel-cannot-carry-transaction"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("fixed"),
        "{problem}"
    );
    let (_, page) = app.get("/v1/verifications").await;
    assert_eq!(page["verifications"], json!([]), "nothing was started");
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_payment_s_fields_are_refused_naming_the_one_that_is_wrong() {
    let app = TestApp::spawn().await;
    let to = "+447700900123";
    for (request, field, says) in [
        (
            json!({"to": to, "amount": "-5", "currency": "EUR", "payee": "Acme"}),
            "amount",
            "not negative",
        ),
        (
            json!({"to": to, "amount": "5 euros", "currency": "EUR", "payee": "Acme"}),
            "amount",
            "decimal",
        ),
        (
            json!({"to": to, "amount": "5.00001", "currency": "EUR", "payee": "Acme"}),
            "amount",
            "after the point",
        ),
        (
            json!({"to": to, "amount": "5", "payee": "Acme"}),
            "currency",
            "required with `amount`",
        ),
        (
            json!({"to": to, "amount": "5", "currency": "euro", "payee": "Acme"}),
            "currency",
            "ISO 4217",
        ),
        (
            json!({"to": to, "amount": "5", "currency": "EUR"}),
            "payee",
            "required",
        ),
        (
            json!({"to": to, "amount": "5", "currency": "EUR",
                   "payee": "A payee name far too long for a text"}),
            "payee",
            "at most 20 characters",
        ),
    ] {
        let (status, problem) = app.post("/v1/verifications", request.clone()).await;
        assert_eq!(status, 422, "{request}: {problem}");
        assert_eq!(problem["field"], field, "{request}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{request}: {detail}");
    }
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_start_for_another_payment_replaces_the_pending_one_whose_code_then_approves_nothing() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000282")
        .await;
    let to = "+447700900124";

    let (status, first) = app.post("/v1/verifications", payment(to)).await;
    assert_eq!(status, 201, "{first}");
    // The same payment again is a resend of the pending verification: too soon here.
    let (status, resent) = app.post("/v1/verifications", payment(to)).await;
    assert_eq!(status, 429, "{resent}");
    let first_id = first["id"].as_str().unwrap();
    let first_code = crate::support::code_in(&app.twilio_requests(1).await[0]["Body"]);

    let mut other = payment(to);
    other["amount"] = json!("99.00");
    let (status, second) = app.post("/v1/verifications", other).await;
    assert_eq!(status, 201, "a new verification: {second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["amount"], "99.00");

    let (_, replaced) = app.get(&format!("/v1/verifications/{first_id}")).await;
    assert_eq!(replaced["status"], "canceled", "{replaced}");
    let (status, refused) = check(
        &app,
        first_id,
        json!({"code": first_code, "amount": "49.90", "currency": "EUR", "payee": "Café Zoë"}),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
}
