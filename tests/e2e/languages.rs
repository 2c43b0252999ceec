//! The language, brand and autofill lines of a code as the phone receives them: the number's
//! country choosing the language when the client names none, the operator's switches, and the
//! lines browsers and Android read to fill the code in.

use serde_json::json;

use crate::support::TestApp;

/// The code at the start of the autofill line `@domain #CODE`, the message's last.
fn autofill_code(body: &str) -> String {
    let last = body.lines().last().unwrap();
    last.rsplit_once(" #").unwrap().1.to_owned()
}

#[tokio::test]
async fn a_french_number_without_a_locale_gets_the_french_text_and_the_answer_says_fr() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000041")
        .await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": "+33 6 12 34 56 78"}))
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["locale"], "fr", "{started}");

    let body = &app.twilio_requests(1).await[0]["Body"];
    assert!(
        body.starts_with("Votre code de vérification Smarter Firms est : "),
        "{body}"
    );
    assert!(body.contains("Il expire dans 10 minutes."), "{body}");
}

#[tokio::test]
async fn each_number_gets_its_country_s_language_and_a_requested_locale_wins() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000042")
        .await;

    for (sent_before, (to, asked, used, opening)) in [
        (
            "+5511987654321",
            json!(null),
            "pt-BR",
            "Código Smarter Firms: ",
        ),
        (
            "+3725123456",
            json!(null),
            "en",
            "Your Smarter Firms verification code is: ",
        ),
        (
            "+33612345679",
            json!("de-AT"),
            "de",
            "Ihr Bestätigungscode für Smarter Firms",
        ),
        (
            "+15551230009",
            json!("xx"),
            "en",
            "Your Smarter Firms verification code is: ",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, started) = app
            .post("/v1/verifications", json!({"to": to, "locale": asked}))
            .await;
        assert_eq!(status, 201, "{started}");
        assert_eq!(started["locale"], used, "{to} {asked}: {started}");
        let sent = app.twilio_requests(sent_before + 1).await;
        let body = &sent.iter().find(|request| request["To"] == to).unwrap()["Body"];
        assert!(body.starts_with(opening), "{to}: {body}");
    }
}

#[tokio::test]
async fn with_auto_locale_off_a_french_number_gets_english() {
    let app = TestApp::spawn_with(&[("VERIFY_AUTO_LOCALE", "false")]).await;
    app.twilio_accepts("SM00000000000000000000000000000043")
        .await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": "+33612345678"}))
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["locale"], "en", "{started}");
    let body = &app.twilio_requests(1).await[0]["Body"];
    assert!(
        body.starts_with("Your Smarter Firms verification code is: "),
        "{body}"
    );
}

#[tokio::test]
async fn an_operator_s_own_template_without_locales_gets_no_automatic_language() {
    let dir = std::env::temp_dir().join(format!("sms-notify-own-2fa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("two-factor-auth.hbs"),
        "{{brand}} code {{code}}, {{expiryMinutes}} min.",
    )
    .unwrap();
    let app = TestApp::spawn_with(&[
        ("TEMPLATES_DIR", dir.to_str().unwrap()),
        ("VERIFY_BRAND", "Acme Bank"),
    ])
    .await;
    app.twilio_accepts("SM00000000000000000000000000000044")
        .await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": "+33612345678"}))
        .await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["locale"], json!(null), "{started}");
    let body = &app.twilio_requests(1).await[0]["Body"];
    assert!(body.starts_with("Acme Bank code "), "{body}");
    assert!(body.ends_with(", 10 min."), "{body}");
}

#[tokio::test]
async fn with_an_app_domain_an_sms_code_ends_with_its_origin_bound_line_after_the_app_hash() {
    let app = TestApp::spawn_with(&[("VERIFY_APP_DOMAIN", "example.com")]).await;
    app.twilio_accepts("SM00000000000000000000000000000045")
        .await;

    let (status, started) = app
        .post("/v1/verifications", json!({"to": "+15551230001"}))
        .await;
    assert_eq!(status, 201, "{started}");
    let body = app.twilio_requests(1).await[0]["Body"].clone();
    let code = autofill_code(&body);
    assert_eq!(code.len(), 6, "{body}");
    assert!(
        body.ends_with(&format!(
            "Do not share this code with anyone.\n@example.com #{code}"
        )),
        "{body}"
    );

    let (status, started) = app
        .post(
            "/v1/verifications",
            json!({"to": "+15551230002", "app_hash": "FA+9qCX9VSu"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let sent = app.twilio_requests(2).await;
    let body = &sent
        .iter()
        .find(|request| request["To"] == "+15551230002")
        .unwrap()["Body"];
    let code = autofill_code(body);
    assert!(
        body.ends_with(&format!("anyone.\nFA+9qCX9VSu\n@example.com #{code}")),
        "{body}"
    );
    // The code the lines carry is the one that approves.
    let id = started["id"].as_str().unwrap();
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["status"], "approved", "{check}");
}

#[tokio::test]
async fn an_app_hash_that_is_not_11_base64_characters_is_a_422_naming_it() {
    let app = TestApp::spawn().await;

    for app_hash in ["FA+9qCX9VS", "FA-9qCX9VSu", "FA+9qCX9VSu="] {
        let (status, problem) = app
            .post(
                "/v1/verifications",
                json!({"to": "+15551230001", "app_hash": app_hash}),
            )
            .await;
        assert_eq!(status, 422, "{app_hash}: {problem}");
        assert!(
            problem.to_string().contains("app_hash"),
            "{app_hash}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("11 characters of base64"),
            "{problem}"
        );
    }
    assert!(
        app.twilio.received_requests().await.unwrap().is_empty(),
        "nothing was sent"
    );
}
