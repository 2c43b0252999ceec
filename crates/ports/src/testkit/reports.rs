//! Conformance of [`MessageReports`] and [`StoreHealth`]: the message list, the usage reports
//! and the metrics' counts, on seeded data whose answers are worked out by hand below.

use chrono::{DateTime, Utc};
use domain::{Amount, AttemptOutcome, Channel, MessageId, MessageStatus, NewMessage, Price};

use super::{
    alice, attempt, claim_one, enqueue_new, notification, phone, secs, t0, StoreUnderTest,
};
use crate::{
    CostSum, DispatchOutcome, ErrorCodeCount, MessageCursor, MessageFilter, MessageReports,
    QueueStats, StatusCount, StoreHealth, UsageGroup, UsageGrouping, UsageQuery,
};

/// A store that also reads its history back.
pub trait ReportStoreUnderTest: StoreUnderTest + MessageReports + StoreHealth {}

impl<S: StoreUnderTest + MessageReports + StoreHealth> ReportStoreUnderTest for S {}

const DAY: i64 = 86_400;

fn new_message(
    created_at: DateTime<Utc>,
    api_key: &str,
    to: &str,
    template: Option<&str>,
    segments: u32,
) -> NewMessage {
    NewMessage {
        api_key: api_key.into(),
        to: phone(to),
        template: template.map(Into::into),
        segments,
        ..notification(created_at)
    }
}

/// Queues `new` and takes it through one attempt ending in `outcome`.
async fn dispatched<S: ReportStoreUnderTest>(store: &S, new: NewMessage, outcome: DispatchOutcome) {
    let at = new.created_at;
    enqueue_new(store, new.clone()).await;
    let claimed = claim_one(store, at).await;
    assert_eq!(
        claimed.message.id, new.id,
        "the seed claims each message alone"
    );
    let kind = match outcome {
        DispatchOutcome::Sent { .. } => AttemptOutcome::Sent,
        _ => AttemptOutcome::PermanentError,
    };
    assert!(store
        .finish(
            claimed.claim,
            new.id,
            Some(attempt(1, at, kind)),
            outcome,
            at
        )
        .await
        .unwrap());
}

fn failed(code: &str) -> DispatchOutcome {
    DispatchOutcome::Failed {
        error_code: Some(code.into()),
        error_message: format!("error {code}"),
    }
}

/// The seed of the usage tests. In the range `[t0, t0 + 2 days)`:
///
/// | message | day        | api key | to | template        | segments | status             |
/// |---------|------------|---------|----|-----------------|----------|--------------------|
/// | m1      | 2026-01-01 | shop    | US | order-shipped   | 1        | queued             |
/// | m2      | 2026-01-01 | shop    | GB | order-shipped   | 2        | sent               |
/// | m3      | 2026-01-01 | shop    | GB | (plain body)    | 3        | failed 21211       |
/// | m4      | 2026-01-02 | auth    | FR | two-factor-auth | 1        | failed 21211       |
/// | m5      | 2026-01-02 | auth    | US | two-factor-auth | 1        | queued, last 20429 |
///
/// Outside it, both queued: m6 (whatsapp, three days later) and m7 (a second before).
pub(crate) async fn seed_usage<S: ReportStoreUnderTest>(store: &S) {
    let us = "+15551234567";
    let gb = "+447700900123";
    let fr = "+33612345678";
    // Claimed as soon as queued, before the messages that stay queued exist.
    let m2 = new_message(t0() + secs(3600), "shop", gb, Some("order-shipped"), 2);
    dispatched(
        store,
        m2,
        DispatchOutcome::Sent {
            provider: "twilio".into(),
            provider_sid: "SM2".into(),
            segments: None,
            price: None,
        },
    )
    .await;
    let m3 = new_message(t0() + secs(7200), "shop", gb, None, 3);
    dispatched(store, m3, failed("21211")).await;
    let m4 = new_message(t0() + secs(DAY), "auth", fr, Some("two-factor-auth"), 1);
    dispatched(store, m4, failed("21211")).await;
    let m5 = new_message(
        t0() + secs(DAY + 3600),
        "auth",
        us,
        Some("two-factor-auth"),
        1,
    );
    dispatched(
        store,
        m5,
        DispatchOutcome::Retry {
            at: t0() + secs(10 * DAY),
            error_code: Some("20429".into()),
            error_message: "too many requests".into(),
        },
    )
    .await;
    enqueue_new(
        store,
        new_message(t0(), "shop", us, Some("order-shipped"), 1),
    )
    .await;
    enqueue_new(
        store,
        NewMessage {
            channel: Channel::Whatsapp,
            ..new_message(t0() + secs(3 * DAY), "shop", us, None, 1)
        },
    )
    .await;
    enqueue_new(store, new_message(t0() - secs(1), "shop", us, None, 1)).await;
}

pub(crate) fn range(group_by: UsageGrouping) -> UsageQuery {
    UsageQuery {
        since: t0(),
        until: t0() + secs(2 * DAY),
        group_by,
        api_key: None,
    }
}

fn group(key: &str, messages: u64, segments: u64, failed: u64) -> UsageGroup {
    UsageGroup {
        key: Some(key.into()),
        messages,
        segments,
        delivered: 0,
        failed,
    }
}

async fn usage<S: ReportStoreUnderTest>(store: &S, group_by: UsageGrouping) -> Vec<UsageGroup> {
    seed_usage(store).await;
    store.usage(&range(group_by)).await.unwrap()
}

pub async fn usage_by_day<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(
        usage(&store, UsageGrouping::Day).await,
        [group("2026-01-01", 3, 6, 1), group("2026-01-02", 2, 2, 1)]
    );
}

pub async fn usage_by_template<S: ReportStoreUnderTest>(store: S) {
    let plain_body = UsageGroup {
        key: None,
        ..group("", 1, 3, 1)
    };
    assert_eq!(
        usage(&store, UsageGrouping::Template).await,
        [
            plain_body,
            group("order-shipped", 2, 3, 0),
            group("two-factor-auth", 2, 2, 1)
        ]
    );
}

pub async fn usage_by_country<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(
        usage(&store, UsageGrouping::Country).await,
        [
            group("FR", 1, 1, 1),
            group("GB", 2, 5, 1),
            group("US", 2, 2, 0)
        ]
    );
}

pub async fn usage_by_status<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(
        usage(&store, UsageGrouping::Status).await,
        [
            group("failed", 2, 4, 2),
            group("queued", 2, 2, 0),
            group("sent", 1, 2, 0)
        ]
    );
}

pub async fn usage_by_api_key<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(
        usage(&store, UsageGrouping::ApiKey).await,
        [group("auth", 2, 2, 1), group("shop", 3, 6, 1)]
    );
}

/// A client's report: the seed's `auth` messages (m4 to FR, m5 to US) and nothing of `shop`'s,
/// in the counts and the error codes alike (the costs:
/// `costs_are_summed_exactly_per_group_and_currency`).
pub async fn a_usage_query_for_one_api_key_counts_only_its_messages<S: ReportStoreUnderTest>(
    store: S,
) {
    seed_usage(&store).await;
    let query = UsageQuery {
        api_key: Some("auth".into()),
        ..range(UsageGrouping::Country)
    };
    assert_eq!(
        store.usage(&query).await.unwrap(),
        [group("FR", 1, 1, 1), group("US", 1, 1, 0)]
    );
    let code = |key: &str, code: &str| ErrorCodeCount {
        key: Some(key.into()),
        code: code.into(),
        count: 1,
    };
    assert_eq!(
        store.error_codes(&query).await.unwrap(),
        [code("FR", "21211"), code("US", "20429")]
    );
}

/// The prices of `costs_are_summed_exactly_per_group_and_currency`: every message sent at
/// `t0` plus a few seconds, to the US.
pub(crate) async fn seed_costs<S: ReportStoreUnderTest>(store: &S) {
    let sent = |provider: &str, amount: Option<&str>, currency: &str| DispatchOutcome::Sent {
        provider: provider.into(),
        provider_sid: format!("SM{}", MessageId::generate()),
        segments: None,
        price: amount.map(|amount| Price {
            amount: amount.into(),
            currency: currency.into(),
        }),
    };
    let us = "+15551234567";
    let largest = "999999.99999999";
    let mut priced = vec![
        (1, "shop", sent("twilio", Some("0.0075"), "USD")),
        (2, "shop", sent("twilio", Some("0.015"), "USD")),
        (3, "shop", sent("twilio", None, "USD")),
        (4, "auth", sent("vonage", Some("0.0333"), "EUR")),
        (5, "auth", sent("twilio", Some("0.0079"), "USD")),
        (6, "auth", sent("vonage", Some("0.03330000"), "EUR")),
    ];
    for (offset, amount) in
        (7..).zip(["1e400", "1000000", "0.000000001", "1.2.3", "--1", "abc", ""])
    {
        priced.push((offset, "auth", sent("vonage", Some(amount), "EUR")));
    }
    for offset in 20..23 {
        priced.push((offset, "bulk", sent("vonage", Some(largest), "EUR")));
    }
    priced.push((23, "bulk", sent("vonage", Some(&"9".repeat(40)), "EUR")));
    for (offset, api_key, outcome) in priced {
        let message = new_message(t0() + secs(offset), api_key, us, None, 1);
        dispatched(store, message, outcome).await;
    }
}

/// Prices as the adapters store them: amounts spent, positive (Twilio's charges turned round,
/// Vonage's as they come), the largest a provider's price may be, and text no adapter would
/// store, which counts nothing rather than failing the report.
pub async fn costs_are_summed_exactly_per_group_and_currency<S: ReportStoreUnderTest>(store: S) {
    seed_costs(&store).await;
    let cost = |key: &str, currency: &str, units| CostSum {
        key: Some(key.into()),
        currency: currency.into(),
        total: Amount::from_units(units),
    };
    let costs = store.costs(&range(UsageGrouping::ApiKey)).await.unwrap();
    assert_eq!(
        costs,
        [
            cost("auth", "EUR", 6_660_000),
            cost("auth", "USD", 790_000),
            cost("bulk", "EUR", 299_999_999_999_997),
            cost("shop", "USD", 2_250_000),
        ]
    );
    assert_eq!(costs[2].total.to_string(), "2999999.99999997");
    assert_eq!(costs[3].total.to_string(), "0.0225");
    let own = UsageQuery {
        api_key: Some("auth".into()),
        ..range(UsageGrouping::ApiKey)
    };
    assert_eq!(store.costs(&own).await.unwrap(), costs[..2]);
}

pub async fn error_codes_are_counted_per_group<S: ReportStoreUnderTest>(store: S) {
    seed_usage(&store).await;
    let code = |key: &str, code: &str, count| ErrorCodeCount {
        key: Some(key.into()),
        code: code.into(),
        count,
    };
    assert_eq!(
        store
            .error_codes(&range(UsageGrouping::ApiKey))
            .await
            .unwrap(),
        [
            code("auth", "20429", 1),
            code("auth", "21211", 1),
            code("shop", "21211", 1)
        ]
    );
    assert_eq!(
        store
            .error_codes(&UsageQuery {
                since: t0() - secs(DAY),
                until: t0() + secs(5 * DAY),
                group_by: UsageGrouping::Template,
                api_key: None,
            })
            .await
            .unwrap(),
        [
            ErrorCodeCount {
                key: None,
                ..code("", "21211", 1)
            },
            code("two-factor-auth", "20429", 1),
            code("two-factor-auth", "21211", 1)
        ]
    );
}

pub async fn status_counts_and_queue_stats_cover_every_message<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(
        store.queue_stats().await.unwrap(),
        QueueStats {
            depth: 0,
            oldest_queued_at: None
        }
    );
    seed_usage(&store).await;
    let count = |status, channel, count| StatusCount {
        status,
        channel,
        count,
    };
    assert_eq!(
        store.status_counts().await.unwrap(),
        [
            count(MessageStatus::Failed, Channel::Sms, 2),
            count(MessageStatus::Queued, Channel::Sms, 3),
            count(MessageStatus::Queued, Channel::Whatsapp, 1),
            count(MessageStatus::Sent, Channel::Sms, 1),
        ]
    );
    assert_eq!(
        store.queue_stats().await.unwrap(),
        QueueStats {
            depth: 4,
            oldest_queued_at: Some(t0() - secs(1))
        }
    );
}

pub async fn list_pages_newest_first_and_filters<S: ReportStoreUnderTest>(store: S) {
    // Two messages in the same microsecond: the id breaks the tie, so paging neither skips
    // nor repeats one.
    let mut shop = Vec::new();
    for offset in [0, 10, 10, 20, 30] {
        shop.push(enqueue_new(&store, notification(t0() + secs(offset))).await);
    }
    let gb = enqueue_new(
        &store,
        NewMessage {
            to: phone("+447700900123"),
            ..notification(t0() + secs(40))
        },
    )
    .await;
    enqueue_new(
        &store,
        new_message(t0() + secs(50), "auth", "+15551234567", None, 1),
    )
    .await;
    let mut newest_first: Vec<(DateTime<Utc>, MessageId)> = shop
        .iter()
        .chain([&gb])
        .map(|message| (message.created_at, message.id))
        .collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    let newest_first: Vec<MessageId> = newest_first.into_iter().map(|(_, id)| id).collect();

    let all = MessageFilter {
        api_key: Some("shop".into()),
        status: None,
        to: None,
        since: None,
        until: None,
        before: None,
        limit: 2,
    };
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_messages(&MessageFilter {
                before,
                ..all.clone()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        before = Some(MessageCursor {
            created_at: last.created_at,
            id: last.id,
        });
        pages.push(page.iter().map(|message| message.id).collect::<Vec<_>>());
    }
    assert_eq!(pages.len(), 3, "six messages in pages of two");
    assert_eq!(pages.concat(), newest_first);

    let to_gb = store
        .list_messages(&MessageFilter {
            to: Some(phone("+447700900123")),
            limit: 10,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(to_gb.iter().map(|m| m.id).collect::<Vec<_>>(), [gb.id]);
    // An operator's search by number, under every key: the shop's five and the auth key's one.
    let every_key = store
        .list_messages(&MessageFilter {
            api_key: None,
            to: Some(alice()),
            limit: 10,
            ..all.clone()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = every_key.iter().map(|m| m.api_key.as_str()).collect();
    assert_eq!(keys, ["auth", "shop", "shop", "shop", "shop", "shop"]);

    let window = store
        .list_messages(&MessageFilter {
            since: Some(t0() + secs(10)),
            until: Some(t0() + secs(30)),
            limit: 10,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 3, "since is inclusive, until exclusive");

    let claimed = claim_one(&store, t0() + secs(100)).await;
    assert!(store
        .finish(
            claimed.claim,
            claimed.message.id,
            None,
            failed("30003"),
            t0() + secs(100)
        )
        .await
        .unwrap());
    let failed_only = store
        .list_messages(&MessageFilter {
            status: Some(MessageStatus::Failed),
            limit: 10,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        failed_only.iter().map(|m| m.id).collect::<Vec<_>>(),
        [claimed.message.id]
    );

    // The dashboard's first page: no condition at all, every key's messages newest first.
    let everything = store
        .list_messages(&MessageFilter {
            api_key: None,
            limit: 10,
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(everything.len(), 7);
    assert_eq!(everything[0].api_key, "auth");
    assert_eq!(everything[1].id, gb.id);
    // Every condition at once, under every key: a number's failed messages of a period.
    let narrowed = |since| MessageFilter {
        api_key: None,
        status: Some(MessageStatus::Failed),
        to: Some(alice()),
        since: Some(since),
        until: Some(t0() + secs(60)),
        limit: 10,
        ..all.clone()
    };
    let found = store
        .list_messages(&narrowed(claimed.message.created_at))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|m| m.id).collect::<Vec<_>>(),
        [claimed.message.id]
    );
    assert!(store
        .list_messages(&narrowed(
            claimed.message.created_at + chrono::TimeDelta::microseconds(1)
        ))
        .await
        .unwrap()
        .is_empty());
}

pub async fn attempts_of_lists_each_messages_attempts_in_order<S: ReportStoreUnderTest>(store: S) {
    let first = enqueue_new(&store, notification(t0())).await;
    let second = enqueue_new(&store, notification(t0() + secs(1))).await;
    let untried = enqueue_new(&store, notification(t0() + secs(2))).await;
    for (id, at) in [(first.id, t0()), (second.id, t0() + secs(1))] {
        let claimed = claim_one(&store, at).await;
        assert_eq!(claimed.message.id, id);
        assert!(store
            .finish(
                claimed.claim,
                id,
                Some(attempt(1, at, AttemptOutcome::RetryableError)),
                DispatchOutcome::Retry {
                    at: at + secs(5),
                    error_code: None,
                    error_message: "timeout".into(),
                },
                at,
            )
            .await
            .unwrap());
    }
    let claimed = claim_one(&store, t0() + secs(5)).await;
    assert_eq!(claimed.message.id, first.id);
    assert!(store
        .finish(
            claimed.claim,
            first.id,
            Some(attempt(2, t0() + secs(5), AttemptOutcome::Sent)),
            DispatchOutcome::Sent {
                provider: "twilio".into(),
                provider_sid: "SM1".into(),
                segments: None,
                price: None,
            },
            t0() + secs(5),
        )
        .await
        .unwrap());

    let mut attempts = store
        .attempts_of(&[first.id, second.id, untried.id])
        .await
        .unwrap();
    // Stable: the order within a message is the store's.
    attempts.sort_by_key(|(id, _)| *id != first.id);
    let summary: Vec<(MessageId, u32, AttemptOutcome)> = attempts
        .iter()
        .map(|(id, attempt)| (*id, attempt.number, attempt.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (first.id, 1, AttemptOutcome::RetryableError),
            (first.id, 2, AttemptOutcome::Sent),
            (second.id, 1, AttemptOutcome::RetryableError),
        ]
    );
    assert!(store.attempts_of(&[]).await.unwrap().is_empty());
}

pub async fn a_migrated_store_has_no_pending_migrations<S: ReportStoreUnderTest>(store: S) {
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
}

pub async fn charged_prices_are_summed_per_country_and_currency_since_a_time<
    S: ReportStoreUnderTest,
>(
    store: S,
) {
    let sent = |amount: &str, currency: &str| DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: format!("SM{}", MessageId::generate()),
        segments: None,
        price: Some(Price {
            amount: amount.into(),
            currency: currency.into(),
        }),
    };
    let gb = "+447700900123";
    for (offset, to, segments, outcome) in [
        (1, gb, 1, sent("0.04", "USD")),
        // Before `since`: not recent.
        (10, gb, 2, sent("0.08", "USD")),
        (11, gb, 1, sent("0.0333", "EUR")),
        (12, "+15551234567", 1, sent("0.0079", "USD")),
        (13, gb, 1, sent("not a price", "USD")),
        (14, gb, 2, sent("0.08000001", "USD")),
    ] {
        let message = new_message(t0() + secs(offset), "auth", to, None, segments);
        dispatched(&store, message, outcome).await;
    }
    let since = t0() + secs(10);
    assert_eq!(
        store.charged_since("GB", "USD", since).await.unwrap(),
        (Amount::from_units(16_000_001), 4)
    );
    assert_eq!(
        store.charged_since("FR", "USD", since).await.unwrap(),
        (Amount::ZERO, 0)
    );
}
