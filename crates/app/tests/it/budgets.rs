//! The daily budgets on messages sent by template or body, through the use case on a real
//! store: refused once a budget has no room, a repeat of an accepted message still answered,
//! and what a message that went unsent reserved given back.

use std::sync::Arc;

use adapters_sqlite::SqliteStore;
use app::usecases::codes::CodeHasher;
use app::usecases::fraud::{BudgetConfig, FraudConfig, FraudRefusal};
use app::usecases::messaging::{Content, SendError, SendRequest};
use app::usecases::StorePorts;
use app::Services;
use chrono::TimeDelta;
use domain::budget::Budgets;
use domain::{Channel, PhoneNumber};
use ports::{DispatchOutcome, Enqueued, MessageStore};
use secrecy::SecretString;

use crate::ManualClock;

struct Fixture {
    services: Services,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
}

/// A service whose messages cost 0.05 a segment, with a daily total of `total`.
async fn fixture(total: &str) -> Fixture {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::at_t0());
    let budgets = BudgetConfig {
        budgets: Budgets {
            daily_total: Some(total.parse().unwrap()),
            ..Budgets::default()
        },
        prices: "*:0.05".parse().unwrap(),
    };
    let services = Services::builder(
        StorePorts::of(store.clone()),
        Arc::new(template::Templates::built_in().unwrap()),
        CodeHasher::new(SecretString::from("p".repeat(32))),
    )
    .clock(clock.clone())
    .fraud_guard(FraudConfig {
        budgets,
        ..FraudConfig::default()
    })
    .api_keys(app::usecases::auth::ApiKeys::generate())
    .readiness(app::observability::health::Readiness::new(
        store.clone(),
        Arc::new(app::providers::console::ConsoleSmsProvider),
    ))
    .build();
    Fixture {
        services,
        store,
        clock,
    }
}

fn shipped(key: &str) -> SendRequest {
    SendRequest {
        to: PhoneNumber::parse("+447700900123").unwrap(),
        channel: Channel::Sms,
        content: Content::Body("Your order shipped".into()),
        idempotency_key: Some(key.to_owned()),
    }
}

async fn send(fixture: &Fixture, key: &str) -> Result<Enqueued, SendError> {
    fixture.services.send_message("shop", shipped(key)).await
}

#[tokio::test]
async fn a_message_that_would_pass_the_daily_total_is_refused_until_midnight_utc() {
    let fixture = fixture("0.10").await;
    for key in ["order-1", "order-2"] {
        assert!(matches!(
            send(&fixture, key).await,
            Ok(Enqueued::Created(_))
        ));
    }
    let refused = send(&fixture, "order-3").await.unwrap_err();
    let SendError::BudgetExhausted(FraudRefusal::BudgetExhausted {
        detail,
        retry_after,
        decision,
    }) = refused
    else {
        panic!("expected a budget refusal, got {refused:?}");
    };
    assert_eq!(
        detail,
        "the daily total: 0.10 of 0.10 USD spent today, and this message costs about 0.05"
    );
    // The test clock stands at noon UTC.
    assert_eq!(retry_after, TimeDelta::hours(12));
    assert!(decision.is_blocked());
    // Nothing was queued for the refused message.
    assert!(fixture
        .store
        .by_idempotency_key("shop", "order-3")
        .await
        .unwrap()
        .is_none());

    fixture.clock.advance(TimeDelta::hours(12));
    assert!(matches!(
        send(&fixture, "order-3").await,
        Ok(Enqueued::Created(_))
    ));
}

#[tokio::test]
async fn a_repeat_of_an_accepted_message_is_answered_when_the_budget_is_spent() {
    let fixture = fixture("0.05").await;
    let Ok(Enqueued::Created(first)) = send(&fixture, "order-1").await else {
        panic!("the first message fits the budget");
    };
    match send(&fixture, "order-1").await {
        Ok(Enqueued::Existing(again)) => assert_eq!(again.id, first.id),
        other => panic!("expected the first message again, got {other:?}"),
    }
    assert!(matches!(
        send(&fixture, "order-2").await,
        Err(SendError::BudgetExhausted(_))
    ));
}

#[tokio::test]
async fn a_message_that_failed_unsent_gives_its_estimate_back_and_a_sent_one_does_not() {
    let fixture = fixture("0.05").await;
    let Ok(Enqueued::Created(first)) = send(&fixture, "order-1").await else {
        panic!("the first message fits the budget");
    };
    assert!(send(&fixture, "order-2").await.is_err());
    // Still queued: nothing to give back yet.
    assert_eq!(fixture.services.settle_budget_spend().await.unwrap(), 0);

    let now = ports::Clock::now(&*fixture.clock);
    let claimed = fixture
        .store
        .claim_due(now, 1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed[0].message.id, first.id);
    let failed = DispatchOutcome::Failed {
        error_code: Some("21211".into()),
        error_message: "invalid 'To' phone number".into(),
    };
    assert!(fixture
        .store
        .finish(claimed[0].claim, first.id, None, failed, now)
        .await
        .unwrap());
    assert_eq!(fixture.services.settle_budget_spend().await.unwrap(), 1);

    let Ok(Enqueued::Created(second)) = send(&fixture, "order-2").await else {
        panic!("the failed message's estimate came back");
    };
    let claimed = fixture
        .store
        .claim_due(now, 1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let sent = DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: "SM00000000000000000000000000000001".into(),
        segments: None,
        price: None,
    };
    assert!(fixture
        .store
        .finish(claimed[0].claim, second.id, None, sent, now)
        .await
        .unwrap());
    assert_eq!(fixture.services.settle_budget_spend().await.unwrap(), 0);
    assert!(send(&fixture, "order-3").await.is_err());
}
