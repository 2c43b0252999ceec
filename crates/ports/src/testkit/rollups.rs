//! Conformance of the reports' hourly rollups ([`DataLifecycle::fold_rollups`]): a report over
//! folded hours, their raw edges and the unfolded hours after them answers what the raw rows
//! alone answer, late delivery receipts and removed rows included. The proof is a twin: the
//! same story told twice, ten days apart, of which only the first is folded; each report of
//! the first must equal the same report of the second.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    AttemptOutcome, Channel, DeliveryEvent, MessageStatus, Price, Verification, VerificationPolicy,
    VerificationStatus,
};

use super::reports::ReportStoreUnderTest;
use super::{attempt, claim_one, code_hash, code_message, phone, secs, t0};
use crate::{
    ConversionGrouping, ConversionQuery, DispatchOutcome, Retained, UsageGrouping, UsageQuery,
};

/// The twin that stays raw starts this long after the folded one.
const TWIN: TimeDelta = TimeDelta::days(10);
/// The fold's settle margin in these tests.
const SETTLE: TimeDelta = TimeDelta::hours(2);

/// Starts a verification of `to` at `at` with one code through `sid` (failed when `None`),
/// priced 0.0079 USD when sent.
async fn verification_with_code<S: ReportStoreUnderTest>(
    store: &S,
    to: &str,
    api_key: &str,
    at: DateTime<Utc>,
    provider: &str,
    sid: Option<&str>,
) -> Verification {
    let verification = Verification::start(
        phone(to),
        Channel::Sms,
        api_key.into(),
        &VerificationPolicy::default(),
        at,
    );
    store
        .create(
            &verification,
            code_hash(1),
            code_message(&verification, at),
            None,
        )
        .await
        .unwrap();
    let claimed = claim_one(store, at).await;
    let (kind, outcome) = match sid {
        Some(sid) => (
            AttemptOutcome::Sent,
            DispatchOutcome::Sent {
                provider: provider.into(),
                provider_sid: sid.into(),
                segments: None,
                price: Some(Price {
                    amount: "0.0079".into(),
                    currency: "USD".into(),
                }),
            },
        ),
        None => (
            AttemptOutcome::PermanentError,
            DispatchOutcome::Failed {
                error_code: Some("21211".into()),
                error_message: "invalid number".into(),
            },
        ),
    };
    let id = claimed.message.id;
    let finished_at = at + secs(1);
    assert!(store
        .finish(
            claimed.claim,
            id,
            Some(attempt(1, finished_at, kind)),
            outcome,
            finished_at
        )
        .await
        .unwrap());
    verification
}

async fn receipt<S: ReportStoreUnderTest>(
    store: &S,
    sid: &str,
    status: MessageStatus,
    price: Option<&str>,
    at: DateTime<Utc>,
) {
    let failed = status != MessageStatus::Delivered;
    let event = DeliveryEvent {
        status,
        error_code: failed.then(|| "30005".to_owned()),
        error_message: failed.then(|| "unknown destination".to_owned()),
        price: price.map(|amount| Price {
            amount: amount.into(),
            currency: "USD".into(),
        }),
        received_at: at,
    };
    store.record_delivery(sid, event, None).await.unwrap();
}

/// The story, from `base` (a whole hour) over two hours, numbers ending in `tag`'s digit; sids
/// carry `tag`. Every verification concludes within its first minutes.
async fn story<S: ReportStoreUnderTest>(store: &S, base: DateTime<Utc>, tag: &str) {
    let sid = |n: u8| format!("SM{tag}{n}");
    let v1 = verification_with_code(
        store,
        &format!("+4477009001{tag}1"),
        "auth",
        base,
        "twilio",
        Some(&sid(1)),
    )
    .await;
    receipt(
        store,
        &sid(1),
        MessageStatus::Delivered,
        None,
        base + secs(6),
    )
    .await;
    assert!(store
        .conclude(v1.id, VerificationStatus::Approved, base + secs(30))
        .await
        .unwrap());
    let v2 = verification_with_code(
        store,
        &format!("+4477009002{tag}2"),
        "auth",
        base + secs(50),
        "twilio",
        Some(&sid(2)),
    )
    .await;
    // Delivered too, in v1's hour: a group of two messages at one price.
    receipt(
        store,
        &sid(2),
        MessageStatus::Delivered,
        None,
        base + secs(57),
    )
    .await;
    assert!(store
        .conclude(v2.id, VerificationStatus::Expired, base + secs(650))
        .await
        .unwrap());
    let v3 = verification_with_code(
        store,
        &format!("+155512345{tag}3"),
        "shop",
        base + secs(100),
        "vonage",
        None,
    )
    .await;
    assert!(store
        .conclude(v3.id, VerificationStatus::Canceled, base + secs(110))
        .await
        .unwrap());
    let v4 = verification_with_code(
        store,
        &format!("+155512346{tag}4"),
        "shop",
        base + secs(3700),
        "vonage",
        Some(&sid(4)),
    )
    .await;
    assert!(store
        .conclude(v4.id, VerificationStatus::Approved, base + secs(3760))
        .await
        .unwrap());
}

/// What arrives hours later, after the first twin's hours were folded.
async fn late_receipts<S: ReportStoreUnderTest>(store: &S, base: DateTime<Utc>, tag: &str) {
    let sid = |n: u8| format!("SM{tag}{n}");
    receipt(
        store,
        &sid(2),
        MessageStatus::Delivered,
        Some("0.0081"),
        base + TimeDelta::hours(3),
    )
    .await;
    receipt(
        store,
        &sid(4),
        MessageStatus::Undelivered,
        None,
        base + TimeDelta::hours(4),
    )
    .await;
}

/// Every report over `[base - 30 min, base + 2 h 30 min)` (raw edges around whole hours), as
/// text with each day key made relative to `base`, so that the twins compare.
async fn reports<S: ReportStoreUnderTest>(store: &S, base: DateTime<Utc>) -> Vec<String> {
    let since = base - TimeDelta::minutes(30);
    let until = base + TimeDelta::minutes(150);
    let day = base.format("%Y-%m-%d").to_string();
    let mut seen = Vec::new();
    for group_by in [
        UsageGrouping::Day,
        UsageGrouping::Template,
        UsageGrouping::Country,
        UsageGrouping::Status,
        UsageGrouping::ApiKey,
    ] {
        let query = UsageQuery {
            since,
            until,
            group_by,
            api_key: None,
        };
        seen.push(format!(
            "usage {group_by:?}: {:?}",
            store.usage(&query).await.unwrap()
        ));
        seen.push(format!(
            "errors {group_by:?}: {:?}",
            store.error_codes(&query).await.unwrap()
        ));
        seen.push(format!(
            "costs {group_by:?}: {:?}",
            store.costs(&query).await.unwrap()
        ));
        let shop = UsageQuery {
            api_key: Some("shop".into()),
            ..query
        };
        seen.push(format!(
            "usage shop {group_by:?}: {:?}",
            store.usage(&shop).await.unwrap()
        ));
    }
    for group_by in [
        ConversionGrouping::Day,
        ConversionGrouping::Country,
        ConversionGrouping::Channel,
        ConversionGrouping::Provider,
        ConversionGrouping::Prefix,
        ConversionGrouping::ApiKey,
    ] {
        let query = ConversionQuery {
            since,
            until,
            group_by,
            api_key: None,
        };
        seen.push(format!(
            "conversion {group_by:?}: {:?}",
            store.conversion(&query).await.unwrap()
        ));
        let auth = ConversionQuery {
            api_key: Some("auth".into()),
            ..query
        };
        seen.push(format!(
            "conversion auth {group_by:?}: {:?}",
            store.conversion(&auth).await.unwrap()
        ));
    }
    seen.into_iter()
        .map(|text| text.replace(&day, "DAY"))
        .collect()
}

pub async fn a_report_over_folded_and_unfolded_hours_equals_the_raw_one_with_late_receipts<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let folded = t0();
    let raw = t0() + TWIN;
    story(&store, folded, "1").await;
    story(&store, raw, "2").await;
    assert_eq!(store.rollup_watermark().await.unwrap(), None);
    let before = reports(&store, folded).await;
    // Folds up to three days after the first story: its hours, never the second's.
    let now = folded + TimeDelta::days(3);
    let mut step = store.fold_rollups(now, SETTLE, 24).await.unwrap();
    while !step.caught_up {
        step = store.fold_rollups(now, SETTLE, 24).await.unwrap();
    }
    assert_eq!(step.watermark, Some(now - SETTLE));
    assert_eq!(store.rollup_watermark().await.unwrap(), Some(now - SETTLE));
    assert_eq!(
        reports(&store, folded).await,
        before,
        "folding changed a report"
    );
    late_receipts(&store, folded, "1").await;
    late_receipts(&store, raw, "2").await;
    let folded_reports = reports(&store, folded).await;
    assert_ne!(folded_reports, before, "the late receipts count");
    assert_eq!(folded_reports, reports(&store, raw).await);
    let delivered = store
        .usage(&UsageQuery {
            since: folded,
            until: folded + TimeDelta::hours(2),
            group_by: UsageGrouping::Status,
            api_key: None,
        })
        .await
        .unwrap();
    assert!(
        delivered
            .iter()
            .any(|group| group.key.as_deref() == Some("delivered") && group.messages == 2),
        "the late delivery counts in the folded hour: {delivered:?}"
    );
}

pub async fn removed_verifications_keep_their_conversion_figures_folded_or_not<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let folded = t0();
    let raw = t0() + TWIN;
    story(&store, folded, "1").await;
    story(&store, raw, "2").await;
    let now = folded + TimeDelta::days(3);
    while !store
        .fold_rollups(now, SETTLE, 1000)
        .await
        .unwrap()
        .caught_up
    {}
    let before_folded = reports(&store, folded).await;
    let before_raw = reports(&store, raw).await;
    // Retention past the first story (folded), an erasure in the second (not folded yet).
    for kind in Retained::ALL {
        while store
            .remove_expired(kind, folded + TimeDelta::days(1), 2)
            .await
            .unwrap()
            .rows()
            > 0
        {}
    }
    store.erase_number(&phone("+15551234624")).await.unwrap();
    assert_eq!(reports(&store, folded).await, before_folded);
    assert_eq!(reports(&store, raw).await, before_raw);
    // Once the second story is folded too, it still answers the same.
    while !store
        .fold_rollups(raw + TimeDelta::days(3), SETTLE, 1000)
        .await
        .unwrap()
        .caught_up
    {}
    assert_eq!(reports(&store, raw).await, before_raw);
    assert!(
        store
            .usage(&UsageQuery {
                since: raw,
                until: raw + TimeDelta::hours(3),
                group_by: UsageGrouping::Status,
                api_key: None
            })
            .await
            .unwrap()
            .iter()
            .map(|group| group.messages)
            .sum::<u64>()
            == 4
    );
}
