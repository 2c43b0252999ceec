//! The dashboard in a real browser: Debian's Chromium driven through chromedriver (WebDriver,
//! with `fantoccini`), as an operator uses it: log in, read the overview and find it agrees
//! with the API, find a message by number, lift a block from the fraud page, be refused with a
//! client key, read conversion as the API reports it and sort it by keyboard, and axe-core
//! finding no serious or critical accessibility violation on any page.
//! Screenshots land in `target/dashboard/`.
//!
//! Without chromium and chromedriver each test says so in one line and passes, except under
//! `CI=true`, where they must run (`.ci/run` installs them).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::dashboard::{conversion_run, spawn, ADMIN_KEY};
use crate::support::{TestApp, API_KEY, MESSAGES_PATH};

/// axe-core (MPL-2.0, its licence beside it), run in each page.
const AXE: &str = include_str!("vendor/axe.min.js");

/// Chromium under chromedriver, ended with the test.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

impl Browser {
    /// A headless Chromium, or `None` (said in one line) when it cannot be had outside CI.
    async fn start() -> Option<Self> {
        let driver = on_path("chromedriver");
        let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the browser tests need chromium and chromedriver under CI: \
                 apt-get install chromium chromium-driver"
            );
            eprintln!(
                "browser test skipped: chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Some(Self {
                        client,
                        _driver: child,
                    })
                }
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver did not start: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn goto(&self, app: &TestApp, path: &str) {
        self.client
            .goto(&format!("{}{path}", app.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Logs in with `key` through the form, as a person types it, and waits for the answer's
    /// page: a click returns before the browser has left the form, so on a busy machine the
    /// next read could still see the login page.
    async fn log_in(&self, app: &TestApp, key: &str) {
        self.goto(app, "/dashboard/login").await;
        let form = self.client.find(Locator::Css("form.login")).await.unwrap();
        let field = self.client.find(Locator::Id("key")).await.unwrap();
        field.send_keys(key).await.unwrap();
        self.client
            .find(Locator::Css("form.login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The form of the page left behind goes stale, whether the answer is the overview or
        // the login form again with its refusal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while form.tag_name().await.is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text_of(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Saves what the browser shows as `target/dashboard/<name>.png`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap();
        file
    }

    /// axe-core's serious and critical violations in the page shown, each as `id: help
    /// (targets)`.
    async fn serious_violations(&self) -> Vec<String> {
        self.client.execute(AXE, vec![]).await.unwrap();
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                    .then(r => done(r.violations))
                    .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));",
                vec![],
            )
            .await
            .unwrap();
        result
            .as_array()
            .unwrap()
            .iter()
            .filter(|violation| {
                matches!(violation["impact"].as_str(), Some("serious" | "critical"))
            })
            .map(|violation| {
                let targets: Vec<String> = violation["nodes"]
                    .as_array()
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|node| node["target"].to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                format!(
                    "{}: {} ({})",
                    violation["id"],
                    violation["help"],
                    targets.join(", ")
                )
            })
            .collect()
    }
}

/// Sums a usage report's groups: messages, delivered, failed.
fn totals(report: &Value) -> (u64, u64, u64) {
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0, 0), |sum, group| {
            (
                sum.0 + group["messages"].as_u64().unwrap(),
                sum.1 + group["delivered"].as_u64().unwrap(),
                sum.2 + group["failed"].as_u64().unwrap(),
            )
        })
}

/// A scripted run: three messages Twilio takes, one it refuses for good.
async fn scripted_run(app: &TestApp) -> Vec<String> {
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(body_string_contains("15551234567"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    // One sid per message: Twilio never gives two messages one.
    for (index, digits) in ["447700900123", "447700900456", "447700900789"]
        .iter()
        .enumerate()
    {
        Mock::given(method("POST"))
            .and(path(MESSAGES_PATH))
            .and(body_string_contains(*digits))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "sid": format!("SM0000000000000000000000000000000{index}"), "status": "queued",
                "num_segments": "1", "price": null, "price_unit": "USD",
                "error_code": null, "error_message": null
            })))
            .mount(&app.twilio)
            .await;
    }
    let mut ids = Vec::new();
    for to in [
        "+447700900123",
        "+447700900456",
        "+447700900789",
        "+15551234567",
    ] {
        let (status, sent) = app
            .post(
                "/v1/messages",
                json!({"to": to, "body": "Your order has shipped"}),
            )
            .await;
        assert_eq!(status, 202, "{sent}");
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    for (id, status) in ids.iter().zip(["sent", "sent", "sent", "failed"]) {
        app.wait_for_status(id, status).await;
    }
    ids
}

#[tokio::test]
async fn the_overview_shows_the_figures_the_api_reports_for_a_scripted_run() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    scripted_run(&app).await;
    browser.log_in(&app, ADMIN_KEY).await;
    assert_eq!(browser.path().await, "/dashboard");

    let (status, report) = app
        .send_as(
            ADMIN_KEY,
            Method::GET,
            "/v1/reports/usage?since=24h&group_by=status",
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let (messages, delivered, failed) = totals(&report);
    assert_eq!((messages, failed), (4, 1), "{report}");
    assert_eq!(
        browser.text_of("[data-figure=messages]").await,
        messages.to_string()
    );
    assert_eq!(
        browser.text_of("[data-figure=delivered]").await,
        delivered.to_string()
    );
    assert_eq!(
        browser.text_of("[data-figure=failed]").await,
        failed.to_string()
    );
    // The charts are drawn by the page's script under the CSP: uPlot made its canvas.
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#chart-hourly canvas"))
        .await
        .unwrap();
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#chart-daily canvas"))
        .await
        .unwrap();
    browser.screenshot("overview").await;
}

#[tokio::test]
async fn an_operator_finds_a_message_by_number_and_reads_its_timeline() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ids = scripted_run(&app).await;
    browser.log_in(&app, ADMIN_KEY).await;
    browser.goto(&app, "/dashboard/messages").await;
    let form = browser
        .client
        .form(Locator::Css("form[role=search]"))
        .await
        .unwrap();
    form.set_by_name("to", "+447700900456").await.unwrap();
    form.submit().await.unwrap();
    // The results page: its search field holds the number.
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input#to[value='+447700900456']"))
        .await
        .unwrap();
    let rows = browser
        .client
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.unwrap();
    assert!(row.contains(&ids[1]), "{row}");
    assert!(
        !row.contains("+447700900456"),
        "the number is shown whole: {row}"
    );
    browser.screenshot("messages").await;

    browser
        .client
        .find(Locator::LinkText(&ids[1]))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        browser.path().await,
        format!("/dashboard/messages/{}", ids[1])
    );
    let timeline = browser.text_of("ol.timeline").await;
    assert!(timeline.contains("queued"), "{timeline}");
    assert!(timeline.contains("attempt 1"), "{timeline}");
    assert!(timeline.contains("sent"), "{timeline}");
    browser.screenshot("message").await;
}

#[tokio::test]
async fn an_operator_unblocks_a_prefix_from_the_fraud_page_and_the_api_agrees() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (status, placed) = app
        .send_as(
            ADMIN_KEY,
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+447700900", "note": "pumping seen"})),
        )
        .await;
    assert_eq!(status, 201, "{placed}");
    browser.log_in(&app, ADMIN_KEY).await;
    browser.goto(&app, "/dashboard/fraud").await;
    let blocks = browser.text_of("main table").await;
    assert!(blocks.contains("+447700900"), "{blocks}");
    assert!(blocks.contains("pumping seen"), "{blocks}");
    browser.screenshot("fraud").await;

    browser
        .client
        .find(Locator::Css("button[aria-label='Unblock +447700900']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page asks before it lifts the block.
    browser.client.accept_alert().await.unwrap();
    let notice = browser.text_of("p.notice").await;
    assert!(notice.contains("lifted"), "{notice}");
    let (status, blocks) = app
        .send_as(ADMIN_KEY, Method::GET, "/v1/fraud/blocks", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(blocks["blocks"], json!([]), "{blocks}");
}

#[tokio::test]
async fn a_client_key_is_refused_at_the_login_form() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in(&app, API_KEY).await;
    let alert = browser.text_of("[role=alert]").await;
    assert!(alert.contains("admin keys"), "{alert}");
    browser.goto(&app, "/dashboard").await;
    assert_eq!(browser.path().await, "/dashboard/login");
    browser.screenshot("refused").await;
}

#[tokio::test]
async fn no_page_has_a_serious_or_critical_accessibility_violation() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let ids = scripted_run(&app).await;
    let (_, verifications) = conversion_run(&app).await;
    let (status, _) = app
        .send_as(
            ADMIN_KEY,
            Method::POST,
            "/v1/fraud/blocks",
            Some(json!({"prefix": "+447700900"})),
        )
        .await;
    assert_eq!(status, 201);
    browser.goto(&app, "/dashboard/login").await;
    let mut found = browser.serious_violations().await;
    browser.log_in(&app, ADMIN_KEY).await;
    let pages = [
        "/dashboard".to_owned(),
        "/dashboard/messages?key=auth".to_owned(),
        format!("/dashboard/messages/{}", ids[3]),
        "/dashboard/fraud".to_owned(),
        "/dashboard/templates".to_owned(),
        "/dashboard/webhooks".to_owned(),
        "/dashboard/conversion".to_owned(),
        "/dashboard/conversion?by=provider&sort=rate&dir=asc".to_owned(),
        "/dashboard/providers".to_owned(),
        "/dashboard/messages?what=verifications".to_owned(),
        format!("/dashboard/verifications/{}", verifications[0]),
    ];
    for page in &pages {
        browser.goto(&app, page).await;
        found.extend(
            browser
                .serious_violations()
                .await
                .into_iter()
                .map(|violation| format!("{page}: {violation}")),
        );
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test]
async fn the_template_preview_follows_the_data_as_it_is_typed() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in(&app, ADMIN_KEY).await;
    browser
        .goto(&app, "/dashboard/templates?name=two-factor-auth")
        .await;
    assert_eq!(browser.text_of("#preview-segments").await, "1");
    assert_eq!(browser.text_of("#preview-encoding").await, "GSM-7");
    let data = browser.client.find(Locator::Id("data")).await.unwrap();
    data.clear().await.unwrap();
    // A code that is not GSM-7 makes the text UCS-2, without a reload.
    data.send_keys(r#"{"code": "١٢٣٤٥٦", "expiryMinutes": 10}"#)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text_of("#preview-encoding").await != "UCS-2" {
        assert!(
            Instant::now() < deadline,
            "the preview did not follow the data"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser.text_of("#preview-text").await.contains("١٢٣٤٥٦"));
    assert_eq!(browser.path().await, "/dashboard/templates");
    browser.screenshot("templates").await;
}

/// The row headers of the conversion table, top to bottom.
async fn conversion_order(browser: &Browser) -> Vec<String> {
    let mut names = Vec::new();
    for cell in browser
        .client
        .find_all(Locator::Css("#conversion-table tbody th[scope=row]"))
        .await
        .unwrap()
    {
        names.push(cell.text().await.unwrap());
    }
    names
}

/// Presses Enter on the sort link of `column`, as a keyboard user does, and waits for the
/// page sorted by it in `direction`.
async fn sort_by_keyboard(browser: &Browser, column: &str, direction: &str) {
    let link = browser
        .client
        .find(Locator::Css(&format!(
            "#conversion-table th a[data-sort={column}]"
        )))
        .await
        .unwrap();
    link.send_keys(&Key::Enter).await.unwrap();
    let sorted = format!("#conversion-table th[aria-sort={direction}] a[data-sort={column}]");
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&sorted))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_conversion_page_shows_the_apis_figures_and_sorts_by_keyboard() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (report, _) = conversion_run(&app).await;
    browser.log_in(&app, ADMIN_KEY).await;
    browser.goto(&app, "/dashboard/conversion?by=country").await;
    for group in report["groups"].as_array().unwrap() {
        let key = group["key"].as_str().unwrap();
        let row = browser
            .client
            .find(Locator::XPath(&format!(
                "//table[@id='conversion-table']//tr[th[@scope='row'][normalize-space()='{key}']]"
            )))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().take(5).collect();
        let expected = [
            key.to_owned(),
            group["verifications_started"].to_string(),
            group["codes_sent"].to_string(),
            group["approved"].to_string(),
            format!("{:.1}%", group["conversion_rate"].as_f64().unwrap() * 100.0),
        ];
        assert_eq!(cells, expected, "{row}");
    }
    // The bar chart is drawn by the page's own script under the CSP.
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#chart-conversion canvas"))
        .await
        .unwrap();
    assert_eq!(conversion_order(&browser).await, ["GB", "US", "FR"]);
    browser.screenshot("conversion").await;

    sort_by_keyboard(&browser, "key", "ascending").await;
    assert_eq!(conversion_order(&browser).await, ["FR", "GB", "US"]);
    sort_by_keyboard(&browser, "key", "descending").await;
    assert_eq!(conversion_order(&browser).await, ["US", "GB", "FR"]);
    sort_by_keyboard(&browser, "rate", "descending").await;
    assert_eq!(conversion_order(&browser).await, ["GB", "US", "FR"]);
}

#[tokio::test]
async fn an_operator_finds_a_numbers_verification_under_every_key_and_reads_its_timeline() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (_, ids) = conversion_run(&app).await;
    browser.log_in(&app, ADMIN_KEY).await;
    browser.goto(&app, "/dashboard/messages").await;
    let form = browser
        .client
        .form(Locator::Css("form[role=search]"))
        .await
        .unwrap();
    form.set_by_name("what", "verifications").await.unwrap();
    form.set_by_name("to", "+447700900111").await.unwrap();
    form.submit().await.unwrap();
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input#to[value='+447700900111']"))
        .await
        .unwrap();
    let rows = browser
        .client
        .find_all(Locator::Css("main table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = rows[0].text().await.unwrap();
    assert!(row.contains(&ids[0]), "{row}");
    assert!(row.contains("approved"), "{row}");
    assert!(
        !row.contains("+447700900111"),
        "the number is shown whole: {row}"
    );
    browser.screenshot("verifications").await;

    browser
        .client
        .find(Locator::LinkText(&ids[0]))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = browser.text_of("ol.timeline").await;
    assert!(timeline.contains("fraud guard"), "{timeline}");
    assert!(timeline.contains("code by sms"), "{timeline}");
    assert!(timeline.contains("accepted by twilio"), "{timeline}");
    assert!(timeline.contains("approved the verification"), "{timeline}");
    browser.screenshot("verification").await;
}

#[tokio::test]
async fn the_providers_page_shows_each_circuit() {
    let app = spawn().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser.log_in(&app, ADMIN_KEY).await;
    browser.goto(&app, "/dashboard/providers").await;
    // One provider: no failover, no circuit, and the page says why.
    let said = browser.text_of("main p.empty").await;
    assert!(said.contains("no circuit"), "{said}");
    assert!(browser.serious_violations().await.is_empty());
    browser.screenshot("providers").await;
}
