//! Conformance of the conversion report ([`MessageReports::conversion`]): verifications,
//! their codes sent, approvals, latencies and costs, on a seed worked out by hand below.

use chrono::{DateTime, Utc};
use domain::latency::LatencyHistogram;
use domain::{
    Amount, AttemptOutcome, Channel, DeliveryEvent, MessageStatus, Price, Verification,
    VerificationPolicy, VerificationStatus,
};

use super::reports::ReportStoreUnderTest;
use super::{attempt, claim_one, code_hash, code_message, phone, secs, t0};
use crate::{
    ConversionGroup, ConversionGrouping, ConversionQuery, DispatchOutcome, UsageGrouping,
    UsageQuery,
};

fn started(to: &str, api_key: &str, at: DateTime<Utc>) -> Verification {
    Verification::start(
        phone(to),
        Channel::Sms,
        api_key.into(),
        &VerificationPolicy::default(),
        at,
    )
}

/// Stores `verification` with its code, and takes the code through one attempt at its start:
/// accepted by `provider` as `sid` for 0.0079 USD, or failed when `sid` is `None`.
async fn with_code<S: ReportStoreUnderTest>(
    store: &S,
    verification: &Verification,
    provider: &str,
    sid: Option<&str>,
) {
    let at = verification.created_at;
    store
        .create(
            verification,
            code_hash(1),
            code_message(verification, at),
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
    assert!(store
        .finish(claimed.claim, id, Some(attempt(1, at, kind)), outcome, at)
        .await
        .unwrap());
}

async fn delivered<S: ReportStoreUnderTest>(store: &S, sid: &str, at: DateTime<Utc>) {
    let event = DeliveryEvent {
        status: MessageStatus::Delivered,
        error_code: None,
        error_message: None,
        price: None,
        received_at: at,
    };
    store.record_delivery(sid, event, None).await.unwrap();
}

/// The seed, in `[t0, t0 + 1 hour)`:
///
/// | verification | key  | number (country)   | code                          | outcome            |
/// |--------------|------|--------------------|-------------------------------|--------------------|
/// | v1           | auth | +447700900123 (GB) | twilio, sent t0+1s, receipt +5s | approved at +30s |
/// | v2           | auth | +447700900456 (GB) | twilio, sent, no receipt      | pending            |
/// | v3           | auth | +15551234567 (US)  | vonage, sent t0+101s, receipt +2s | approved at +100s+90s |
/// | v4           | shop | +15551234568 (US)  | failed                        | canceled           |
///
/// Each code accepted costs 0.0079 USD. One more verification starts an hour later, outside.
async fn seed_conversion<S: ReportStoreUnderTest>(store: &S) {
    let v1 = started("+447700900123", "auth", t0());
    with_code(store, &v1, "twilio", Some("SMv1")).await;
    delivered(store, "SMv1", t0() + secs(6)).await;
    assert!(store
        .conclude(v1.id, VerificationStatus::Approved, t0() + secs(30))
        .await
        .unwrap());
    let v2 = started("+447700900456", "auth", t0() + secs(50));
    with_code(store, &v2, "twilio", Some("SMv2")).await;
    let v3 = started("+15551234567", "auth", t0() + secs(100));
    with_code(store, &v3, "vonage", Some("SMv3")).await;
    delivered(store, "SMv3", t0() + secs(103)).await;
    assert!(store
        .conclude(v3.id, VerificationStatus::Approved, t0() + secs(190))
        .await
        .unwrap());
    let v4 = started("+15551234568", "shop", t0() + secs(200));
    with_code(store, &v4, "twilio", None).await;
    assert!(store
        .conclude(v4.id, VerificationStatus::Canceled, t0() + secs(210))
        .await
        .unwrap());
    let later = started("+447700900789", "auth", t0() + secs(3600));
    with_code(store, &later, "twilio", Some("SMlater")).await;
}

/// Each group's key and verifications started, in the report's order.
type Groups = Vec<(Option<&'static str>, u64)>;

fn hour_query(group_by: ConversionGrouping, api_key: Option<&str>) -> ConversionQuery {
    ConversionQuery {
        since: t0(),
        until: t0() + secs(3600),
        group_by,
        api_key: api_key.map(Into::into),
    }
}

fn histogram(latencies_ms: &[u64]) -> LatencyHistogram {
    let mut histogram = LatencyHistogram::default();
    for &millis in latencies_ms {
        histogram.record(millis);
    }
    histogram
}

fn usd(units: i128) -> Vec<(String, Amount)> {
    vec![("USD".to_owned(), Amount::from_units(units))]
}

pub async fn conversion_by_country_counts_codes_approvals_latencies_and_costs<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    seed_conversion(&store).await;
    let groups = store
        .conversion(&hour_query(ConversionGrouping::Country, None))
        .await
        .unwrap();
    assert_eq!(
        groups,
        [
            ConversionGroup {
                key: Some("GB".into()),
                started: 2,
                codes_sent: 2,
                approved: 1,
                to_approve: histogram(&[30_000]),
                // Sent when its attempt finished (t0 + 1s), delivered at t0 + 6s.
                to_deliver: histogram(&[5_000]),
                costs: usd(1_580_000),
            },
            ConversionGroup {
                key: Some("US".into()),
                started: 2,
                codes_sent: 1,
                approved: 1,
                to_approve: histogram(&[90_000]),
                to_deliver: histogram(&[2_000]),
                costs: usd(790_000),
            },
        ]
    );
}

pub async fn conversion_groups_by_provider_prefix_channel_day_and_api_key<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    seed_conversion(&store).await;
    let keys_and_started = |groups: Vec<ConversionGroup>| -> Vec<(Option<String>, u64)> {
        groups
            .into_iter()
            .map(|group| (group.key, group.started))
            .collect()
    };
    let cases: [(ConversionGrouping, Groups); 5] = [
        (
            ConversionGrouping::Provider,
            vec![(None, 1), (Some("twilio"), 2), (Some("vonage"), 1)],
        ),
        (
            ConversionGrouping::Prefix,
            vec![(Some("+155512"), 2), (Some("+4477009"), 2)],
        ),
        (ConversionGrouping::Channel, vec![(Some("sms"), 4)]),
        (ConversionGrouping::Day, vec![(Some("2026-01-01"), 4)]),
        (
            ConversionGrouping::ApiKey,
            vec![(Some("auth"), 3), (Some("shop"), 1)],
        ),
    ];
    for (grouping, expected) in cases {
        let groups = store.conversion(&hour_query(grouping, None)).await.unwrap();
        let expected: Vec<(Option<String>, u64)> = expected
            .into_iter()
            .map(|(key, started)| (key.map(Into::into), started))
            .collect();
        assert_eq!(keys_and_started(groups), expected, "{grouping:?}");
    }
}

pub async fn a_conversion_query_for_one_api_key_counts_only_its_verifications<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    seed_conversion(&store).await;
    let groups = store
        .conversion(&hour_query(ConversionGrouping::ApiKey, Some("shop")))
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].key.as_deref(), Some("shop"));
    assert_eq!(
        (groups[0].started, groups[0].codes_sent, groups[0].approved),
        (1, 0, 0)
    );
    assert!(groups[0].costs.is_empty());
}

/// The codes sent and their cost are the usage report's figures for the same messages.
pub async fn conversion_and_usage_agree_on_codes_sent_and_their_cost<S: ReportStoreUnderTest>(
    store: S,
) {
    seed_conversion(&store).await;
    let conversion = store
        .conversion(&hour_query(ConversionGrouping::Day, None))
        .await
        .unwrap();
    let usage_query = UsageQuery {
        since: t0(),
        until: t0() + secs(3600),
        group_by: UsageGrouping::Status,
        api_key: None,
    };
    let accepted: u64 = store
        .usage(&usage_query)
        .await
        .unwrap()
        .iter()
        .filter(|group| {
            group.key.as_deref().is_some_and(|status| {
                MessageStatus::ACCEPTED
                    .iter()
                    .any(|accepted| accepted.as_str() == status)
            })
        })
        .map(|group| group.messages)
        .sum();
    assert_eq!(conversion[0].codes_sent, accepted);
    let usage_cost: i128 = store
        .costs(&usage_query)
        .await
        .unwrap()
        .iter()
        .map(|cost| cost.total.units())
        .sum();
    assert_eq!(conversion[0].costs, usd(usage_cost));
}
