//! Two-factor verification over HTTP: codes sent, checked, locked, resent, canceled and
//! listed, and checks at once that approve exactly once.

use serde_json::{json, Value};

use crate::support::{code_in, TestApp, API_KEY, FROM};

#[tokio::test]
async fn a_code_sent_through_twilio_approves_its_verification_once() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;

    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+1 555 123 4567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    assert_eq!(verification["status"], "pending");
    assert_eq!(verification["to"], "+1555***4567");
    assert_eq!(verification["send_count"], 1);
    let id = verification["id"].as_str().unwrap();

    let sent = app.twilio_requests(1).await;
    assert_eq!(sent[0]["To"], "+15551234567");
    assert_eq!(sent[0]["From"], FROM);
    let code = code_in(&sent[0]["Body"]);
    assert_eq!(code.len(), 6, "{}", sent[0]["Body"]);
    assert!(sent[0]["Body"]
        .ends_with("This code will expire in 10 minutes. Do not share this code with anyone."));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": wrong}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        check,
        json!({"status": "pending", "valid": false, "attempts_left": 4})
    );

    let (_, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        check,
        json!({"status": "approved", "valid": true, "attempts_left": 3})
    );

    // Approval is single-use: the same code again finds nothing to check, as in Twilio Verify.
    let (status, again) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 404, "{again}");
    assert_eq!(again["type"], "verification-ended");
    assert_eq!(again["code"], 20404);
    assert!(!again.to_string().contains("approved"), "{again}");
}

#[tokio::test]
async fn five_wrong_codes_lock_the_verification_even_for_the_right_one() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000002")
        .await;
    let (_, verification) = app
        .post(
            "/v1/verifications",
            json!({"to": "+15551234567", "code_length": 4}),
        )
        .await;
    let id = verification["id"].as_str().unwrap();
    let code = code_in(&app.twilio_requests(1).await[0]["Body"]);
    assert_eq!(code.len(), 4);
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..5 {
        app.post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": wrong}),
        )
        .await;
    }
    let (status, sixth) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 429, "{sixth}");
    assert_eq!(sixth["type"], "max-attempts-reached");
    assert_eq!(sixth["code"], 60202);
    let (_, verification) = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(verification["status"], "max_attempts_reached");
}

#[tokio::test]
async fn asking_again_at_once_is_refused_with_retry_after() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000003")
        .await;
    let (status, _) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201);
    let response = app
        .client
        .post(format!("{}/v1/verifications", app.base))
        .bearer_auth(API_KEY)
        .json(&json!({"to": "+15551234567"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn the_default_run_prints_the_code_and_approves_it() {
    // SQLite and the console provider: nothing reaches Twilio, the code is checked all the same.
    let app = TestApp::spawn_default().await;
    let (status, verification) = app
        .post("/v1/verifications", json!({"to": "+15551234567"}))
        .await;
    assert_eq!(status, 201, "{verification}");
    let id = verification["id"].as_str().unwrap();
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": "000000"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(check["valid"], false);
    assert_eq!(check["attempts_left"], 4);
    assert!(app.twilio.received_requests().await.unwrap().is_empty());
}

/// Sends `count` checks of `code` at once and returns every answer's status and body.
async fn concurrent_checks(app: &TestApp, id: &str, code: &str, count: usize) -> Vec<(u16, Value)> {
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = app
            .client
            .post(format!("{}/v1/verifications/{id}/check", app.base))
            .bearer_auth(API_KEY)
            .json(&json!({ "code": code }));
        checks.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    checks.join_all().await
}

/// A verification of `to` started on `app`, with the code Twilio was asked to send.
async fn started_with_code(app: &TestApp, to: &str, sends_so_far: usize) -> (String, String) {
    let (status, verification) = app.post("/v1/verifications", json!({ "to": to })).await;
    assert_eq!(status, 201, "{verification}");
    let sent = app.twilio_requests(sends_so_far + 1).await;
    let code = code_in(&sent[sends_so_far]["Body"]);
    (verification["id"].as_str().unwrap().to_owned(), code)
}

fn wrong(code: &str) -> String {
    code.chars()
        .map(|digit| if digit == '0' { '1' } else { '0' })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_checks_with_the_right_code_approve_exactly_once() {
    let app = TestApp::spawn_on_postgres().await;
    app.twilio_expects_codes(&["+15551234567"], 1).await;
    let (id, code) = started_with_code(&app, "+15551234567", 0).await;

    let answers = concurrent_checks(&app, &id, &code, 20).await;
    let approvals: Vec<_> = answers
        .iter()
        .filter(|(_, answer)| answer.to_string().contains("approved"))
        .collect();
    assert_eq!(approvals.len(), 1, "{answers:?}");
    assert_eq!(approvals[0].0, 200);
    assert_eq!(approvals[0].1["valid"], true);
    // The others are refused: the verification ended, or (seen before the approval is
    // recorded) its five attempts are used up.
    assert!(
        answers
            .iter()
            .all(|(status, answer)| answer["status"] == "approved"
                || (*status == 404 && answer["code"] == 20404)
                || (*status == 429 && answer["code"] == 60202)),
        "{answers:?}"
    );
    let (_, verification) = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(verification["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_wrong_checks_use_up_five_attempts_and_no_more() {
    let app = TestApp::spawn_on_postgres().await;
    app.twilio_expects_codes(&["+15551234567"], 1).await;
    let (id, code) = started_with_code(&app, "+15551234567", 0).await;

    let answers = concurrent_checks(&app, &id, &wrong(&code), 20).await;
    // Each counted check answers with the attempts left after it: 4, 3, 2, 1, then 0 with
    // max_attempts_reached. A sixth counted check would repeat one of them.
    let mut counted: Vec<(&str, u64)> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, answer)| {
            assert_eq!(answer["valid"], false, "{answer}");
            (
                answer["status"].as_str().unwrap(),
                answer["attempts_left"].as_u64().unwrap(),
            )
        })
        .collect();
    counted.sort_unstable();
    assert_eq!(
        counted,
        [
            ("max_attempts_reached", 0),
            ("pending", 1),
            ("pending", 2),
            ("pending", 3),
            ("pending", 4)
        ],
        "{answers:?}"
    );
    assert!(answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .all(|(status, answer)| *status == 429 && answer["code"] == 60202));

    let (status, last) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 429, "{last}");
    assert_eq!(last["code"], 60202);
}

#[tokio::test]
async fn after_an_approval_the_number_gets_a_new_verification_and_the_old_code_is_spent() {
    let app = TestApp::spawn().await;
    app.twilio_expects_codes(&["+15551234567"], 2).await;
    let (first_id, first_code) = started_with_code(&app, "+15551234567", 0).await;
    let (_, approved) = app
        .post(
            &format!("/v1/verifications/{first_id}/check"),
            json!({"code": first_code}),
        )
        .await;
    assert_eq!(approved["valid"], true);

    // Not the approved one reused: a new verification with a new code.
    let (second_id, second_code) = started_with_code(&app, "+15551234567", 1).await;
    assert_ne!(second_id, first_id);
    let (status, spent) = app
        .post(
            &format!("/v1/verifications/{first_id}/check"),
            json!({"code": first_code}),
        )
        .await;
    assert_eq!(status, 404, "{spent}");
    if second_code != first_code {
        let (_, old_code) = app
            .post(
                "/v1/verification-checks",
                json!({"to": "+15551234567", "code": first_code}),
            )
            .await;
        assert_eq!(old_code["valid"], false, "an old code approves nothing new");
    }
    let (_, check) = app
        .post(
            "/v1/verification-checks",
            json!({"to": "+1 555 123 4567", "code": second_code}),
        )
        .await;
    assert_eq!(check["status"], "approved");
    assert_eq!(check["valid"], true);
    let (status, problem) = app
        .post(
            "/v1/verification-checks",
            json!({"to": "+15551234567", "code": second_code}),
        )
        .await;
    assert_eq!(status, 404, "no pending verification is left: {problem}");
}

#[tokio::test]
async fn a_canceled_verification_approves_nothing() {
    let app = TestApp::spawn().await;
    app.twilio_expects_codes(&["+15551234567", "+15557654321"], 2)
        .await;
    let (id, code) = started_with_code(&app, "+15551234567", 0).await;

    let (status, canceled) = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["to"], "+1555***4567");
    let (status, check) = app
        .post(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 404, "{check}");
    assert_eq!(check["code"], 20404);
    let (status, again) = app
        .post(&format!("/v1/verifications/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "canceling twice is harmless: {again}");

    let (approved_id, approved_code) = started_with_code(&app, "+15557654321", 1).await;
    app.post(
        &format!("/v1/verifications/{approved_id}/check"),
        json!({"code": approved_code}),
    )
    .await;
    let (status, problem) = app
        .post(
            &format!("/v1/verifications/{approved_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["detail"], "the verification is already approved");

    let (status, _) = app
        .post(
            "/v1/verifications/0193d3e2-0000-7000-8000-000000000000/cancel",
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

/// Checks one verification with `right` and 19 wrong codes at once, through `check` (the
/// path, and whether the body names the verification by id or by number), and returns every
/// answer: its status and body as the client reads them.
async fn one_right_and_nineteen_wrong_at_once(
    app: &TestApp,
    check: &str,
    target: Value,
    right: &str,
) -> Vec<(u16, String)> {
    let number: u32 = right.parse().unwrap();
    let modulus = 10u32.pow(u32::try_from(right.len()).unwrap());
    let mut codes: Vec<String> = (1..20)
        .map(|offset| {
            format!(
                "{:0width$}",
                (number + offset) % modulus,
                width = right.len()
            )
        })
        .collect();
    // In the middle, so that wrong codes race it from both sides.
    codes.insert(10, right.to_owned());
    let mut checks = tokio::task::JoinSet::new();
    for code in codes {
        let mut body = target.clone();
        body["code"] = json!(code);
        let request = app
            .client
            .post(format!("{}{check}", app.base))
            .bearer_auth(API_KEY)
            .json(&body);
        checks.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        });
    }
    checks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_right_and_nineteen_wrong_codes_at_once_get_exactly_one_answer_saying_approved() {
    // Twenty checks allowed, so that every check counts until the verification ends.
    let app = TestApp::spawn_on_postgres_with(&[("VERIFY_MAX_CHECKS", "20")]).await;
    app.twilio_expects_codes(&["+15551234567", "+15557654321"], 2)
        .await;
    for (sends_so_far, to, by_number) in [(0, "+15551234567", false), (1, "+15557654321", true)] {
        let (id, code) = started_with_code(&app, to, sends_so_far).await;
        let (check, target) = if by_number {
            ("/v1/verification-checks".to_owned(), json!({ "to": to }))
        } else {
            (format!("/v1/verifications/{id}/check"), json!({}))
        };

        let answers =
            one_right_and_nineteen_wrong_at_once(&app, &check, target.clone(), &code).await;
        let (approving, others): (Vec<_>, Vec<_>) = answers
            .iter()
            .partition(|(_, body)| body.contains("approved"));
        assert_eq!(approving.len(), 1, "by number: {by_number}, {answers:#?}");
        let approval: Value = serde_json::from_str(&approving[0].1).unwrap();
        assert_eq!(approving[0].0, 200);
        assert_eq!(approval["status"], "approved");
        assert_eq!(approval["valid"], true);
        for (status, body) in others {
            let answer: Value = serde_json::from_str(body).unwrap();
            match status {
                200 => assert!(
                    answer["valid"] == false
                        && (answer["status"] == "pending"
                            || answer["status"] == "max_attempts_reached"),
                    "{answer}"
                ),
                404 => assert_eq!(answer["code"], 20404, "{answer}"),
                _ => panic!("a check answered {status} {answer}"),
            }
        }

        let mut late = target;
        late["code"] = json!(code);
        let (status, problem) = app.post(&check, late).await;
        assert_eq!(status, 404, "{problem}");
        assert_eq!(problem["code"], 20404, "{problem}");
        assert!(!problem.to_string().contains("approved"), "{problem}");
    }
    // Each approval counted once, by number as by id.
    let approvals = r#"sms_notify_verifications_total{event="approved"} 2"#;
    let metrics = app.metrics().await;
    assert!(metrics.iter().any(|line| line == approvals), "{metrics:#?}");
}

#[tokio::test]
async fn a_verification_answers_the_locale_of_the_translation_it_used() {
    let dir = std::env::temp_dir().join(format!("sms-notify-locales-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("two-factor-auth.fr.hbs"),
        "Votre code : {{code}}, valable {{expiryMinutes}} minutes.",
    )
    .unwrap();
    let app = TestApp::spawn_with(&[("TEMPLATES_DIR", dir.to_str().unwrap())]).await;
    app.twilio_accepts("SM00000000000000000000000000000021")
        .await;

    for (to, asked, used) in [
        ("+15551230001", json!("fr-CA"), json!("fr")),
        // German is built in; a US number with no locale gets English.
        ("+15551230002", json!("de"), json!("de")),
        ("+15551230003", json!(null), json!("en")),
    ] {
        let (status, started) = app
            .post("/v1/verifications", json!({"to": to, "locale": asked}))
            .await;
        assert_eq!(status, 201, "{started}");
        assert_eq!(started["locale"], used, "asked {asked}: {started}");
        assert_eq!(started["status"], "pending");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn verifications_list_newest_first_with_the_message_lists_filters_and_cursor() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000031")
        .await;
    let mut ids = Vec::new();
    for to in ["+15551230011", "+447700900123", "+15551230013"] {
        let (status, started) = app.post("/v1/verifications", json!({"to": to})).await;
        assert_eq!(status, 201, "{started}");
        ids.push(started["id"].clone());
    }
    let (status, _) = app
        .post(
            &format!("/v1/verifications/{}/cancel", ids[0].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let listed = |page: &Value| -> Vec<Value> {
        page["verifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect()
    };
    let (status, first) = app.get("/v1/verifications?limit=2&since=1h").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(listed(&first), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(first["verifications"][1]["to"], "+4477***0123");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!("/v1/verifications?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(listed(&second), vec![ids[0].clone()]);
    assert!(second.get("next_cursor").is_none(), "{second}");

    let (_, canceled) = app.get("/v1/verifications?status=canceled").await;
    assert_eq!(listed(&canceled), vec![ids[0].clone()]);
    let (_, london) = app.get("/v1/verifications?to=%2B447700900123").await;
    assert_eq!(listed(&london), vec![ids[1].clone()]);
    let (_, none_yet) = app.get("/v1/verifications?until=30m").await;
    assert_eq!(listed(&none_yet), Vec::<Value>::new());
    let (status, problem) = app.get("/v1/verifications?limit=101").await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("limit")));

    let (_, openapi) = app.get("/openapi.json").await;
    assert!(
        openapi["paths"]["/v1/verifications"]["get"].is_object(),
        "GET /v1/verifications is described"
    );
}
