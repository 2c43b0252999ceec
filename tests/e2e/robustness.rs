//! What neither a scraper, a client nor a provider can use to hurt the service: metrics that
//! cost the database one read per interval, on a listener of their own when asked; dates and
//! provider delays that no arithmetic can overflow.

use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::fake_twilio::{form_fields, messages_post, Recorder};
use crate::support::{TestApp, FROM};

#[tokio::test]
async fn metrics_bind_addr_serves_metrics_there_and_not_on_the_api() {
    let app = TestApp::spawn_with(&[("METRICS_BIND_ADDR", "127.0.0.1:0")]).await;
    let metrics_base = app.metrics_base.clone().unwrap();
    let apart = app
        .client
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(apart.status(), 200);
    assert!(apart
        .text()
        .await
        .unwrap()
        .contains("sms_notify_queue_depth 0"));

    let public = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    assert_eq!(public.headers()["content-type"], "application/problem+json");
    // The metrics listener serves nothing else.
    let other = app
        .client
        .get(format!("{metrics_base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn a_scrape_within_five_seconds_of_the_last_shows_the_same_counts() {
    let app = TestApp::spawn().await;
    app.twilio_accepts("SM00000000000000000000000000000001")
        .await;
    let read_at = Instant::now();
    let messages = |metrics: &[String]| {
        metrics
            .iter()
            .filter(|line| line.starts_with("sms_notify_messages{"))
            .count()
    };
    assert_eq!(messages(&app.metrics().await), 0);

    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "Hello"}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    let scraped = app.metrics().await;
    assert!(
        read_at.elapsed() < Duration::from_secs(5),
        "too slow to tell"
    );
    assert_eq!(messages(&scraped), 0, "the last read is reused");

    // The next read, 5 s after the first, sees the message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while messages(&app.metrics().await) == 0 {
        assert!(
            Instant::now() < deadline,
            "the gauges were never read again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(read_at.elapsed() >= Duration::from_secs(5));
}

#[tokio::test]
async fn a_retry_after_of_eleven_days_waits_no_longer_than_retry_cap_seconds() {
    let app = TestApp::spawn_with(&[("RETRY_CAP_SECONDS", "1")]).await;
    let fields = || {
        form_fields(
            &[("To", "+15551234567"), ("From", FROM), ("Body", "Hello")],
            &[],
        )
    };
    messages_post(fields())
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "999999")
                .set_body_json(json!({
                    "code": 20429, "message": "Too Many Requests", "status": 429
                })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&app.twilio)
        .await;
    messages_post(fields())
        .respond_with(Recorder::new(Duration::ZERO))
        .expect(1)
        .mount(&app.twilio)
        .await;

    let (status, message) = app
        .post(
            "/v1/messages",
            json!({"to": "+15551234567", "body": "Hello"}),
        )
        .await;
    assert_eq!(status, 202, "{message}");
    let sent = app
        .wait_for_status(message["id"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 2, "{sent}");
}

#[tokio::test]
async fn dates_beyond_four_digit_years_are_a_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("/v1/reports/usage?until=-262143-01-15T00:00:00Z", "until"),
        ("/v1/reports/usage?since=-262143-01-15T00:00:00Z", "since"),
        ("/v1/reports/usage?until=+262142-12-31T00:00:00Z", "until"),
        ("/v1/messages?since=-262143-01-15T00:00:00Z", "since"),
        ("/v1/messages?until=+262142-12-31T00:00:00Z", "until"),
    ] {
        let query = query.replace('+', "%2B");
        let (status, problem) = app.get(&query).await;
        assert_eq!(status, 422, "{query}: {problem}");
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    // The earliest and latest of them still make a report.
    let (status, report) = app
        .get("/v1/reports/usage?since=0000-01-01T00:00:00Z&until=9999-12-31T23:59:59Z")
        .await;
    assert_eq!(status, 200, "{report}");
}
