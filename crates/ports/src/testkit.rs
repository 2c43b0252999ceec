//! Conformance tests every store adapter runs, so that PostgreSQL and SQLite behave the same.
//!
//! Each public `async fn` checks one behaviour of [`MessageStore`], [`VerificationStore`],
//! [`RateLimiter`], [`FraudStore`] or the reports on a fresh, empty store. An adapter runs them
//! all with [`store_conformance_tests!`], which generates one `#[tokio::test]` per behaviour so
//! that a failure names the behaviour:
//!
//! ```text
//! async fn fresh_store() -> (SqliteStore, tempfile::TempDir) { /* ... */ }
//! ports::store_conformance_tests!(fresh_store);
//! ```
//!
//! Times are whole seconds from a fixed instant: the stores keep microseconds, and no test
//! here reads the clock.

// Test code: a panic with the failed expectation is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Attempt, AttemptOutcome, Channel, CodeHash, Message, MessageId, MessageStatus, NewMessage,
    PhoneNumber, Priority, Verification, VerificationId, VerificationPolicy, VerificationStatus,
};

use crate::{
    Admission, ClaimBudget, ClaimLimit, ClaimToken, ClaimedMessage, DataLifecycle, DispatchOutcome,
    Enqueued, FraudStore, MessageStore, RateLimit, RateLimiter, SenderRate, VerificationCursor,
    VerificationFilter, VerificationStore, VerifyServiceStore, WebhookStore, WorkflowStore,
};

mod conversion;
mod fraud;
mod lifecycle;
mod reports;
mod rollups;
mod verify_services;
mod webhooks;
mod workflows;
pub use conversion::*;
pub use fraud::*;
pub use lifecycle::*;
pub use reports::*;
pub use rollups::*;
pub use verify_services::*;
pub use webhooks::*;
pub use workflows::*;

/// What a store under test must be: every store port in one, cheap to clone into concurrent
/// tasks.
pub trait StoreUnderTest:
    MessageStore
    + VerificationStore
    + RateLimiter
    + FraudStore
    + VerifyServiceStore
    + WebhookStore
    + WorkflowStore
    + DataLifecycle
    + Clone
    + 'static
{
}

impl<
        S: MessageStore
            + VerificationStore
            + RateLimiter
            + FraudStore
            + VerifyServiceStore
            + WebhookStore
            + WorkflowStore
            + DataLifecycle
            + Clone
            + 'static,
    > StoreUnderTest for S
{
}

/// Generates one `#[tokio::test]` per conformance behaviour. `$fresh` names an `async fn()`
/// returning `(store, guard)`: a new, empty store and whatever must live as long as the test
/// (a temporary directory, a test database; `()` when nothing does). The store must also read
/// its history back ([`ReportStoreUnderTest`]).
///
/// The table below is the one list of behaviours. A name in it that is no `pub async fn` of
/// the testkit does not compile; a `pub async fn` missing from it fails this crate's test
/// `every_public_async_fn_of_the_testkit_is_in_the_conformance_table`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh:path) => {
        $crate::store_conformance_tests!(@table [@tests $fresh]);
    };
    // The table: hands every behaviour's name to the arm that `$then` starts with.
    (@table [$($then:tt)*]) => {
        $crate::store_conformance_tests! {
            $($then)*;
            // MessageStore, VerificationStore, RateLimiter
            enqueue_then_get_round_trips,
            idempotency_key_returns_the_original,
            same_idempotency_key_from_another_api_key_is_a_new_message,
            messages_without_an_idempotency_key_are_never_merged,
            concurrent_enqueues_with_one_idempotency_key_store_one_message,
            concurrent_enqueues_each_store_their_own_message,
            claim_orders_by_priority_then_age,
            claim_skips_messages_not_yet_due,
            claim_leases_the_message_and_counts_the_attempt,
            concurrent_claims_never_share_a_message,
            expired_lease_is_claimed_again_and_the_old_claim_cannot_finish,
            lapsed_leases_are_claimed_again_the_longest_lapsed_first,
            a_message_whose_workers_keep_dying_fails_after_max_attempts,
            finish_records_attempts_and_sets_status,
            concurrent_finishes_each_record_their_own_outcome,
            retry_requeues_at_the_given_time,
            permanent_failure_fails_the_message_for_good,
            a_partly_sent_message_fails_keeping_what_went_out,
            expired_message_finishes_without_an_attempt,
            next_due_at_is_the_earliest_queued_message_or_lease_end,
            final_one_time_code_message_loses_its_body,
            final_sensitive_message_loses_its_body,
            a_call_keeps_its_language_and_a_whatsapp_code_its_template_until_sent,
            sent_message_keeps_the_providers_price,
            delivery_report_moves_a_sent_message_into_its_history,
            undelivered_report_keeps_the_carrier_error_and_price,
            late_or_repeated_delivery_reports_change_nothing,
            delivery_report_for_an_unknown_sid_changes_nothing,
            concurrent_identical_reports_apply_once,
            a_report_with_a_token_already_applied_is_a_duplicate,
            unconfirmed_sent_messages_are_claimed_oldest_first_per_provider_and_held,
            concurrent_unconfirmed_claims_never_share_a_message,
            claims_stop_at_the_shared_in_flight_cap,
            a_reserve_waits_beyond_the_cap_and_is_counted,
            settling_messages_hold_no_place_under_the_cap,
            concurrent_capped_claims_never_exceed_the_cap,
            a_sender_rate_spaces_send_times_across_claims,
            concurrent_claims_share_one_sender_rate,
            release_returns_a_claim_to_the_queue_unsent,
            create_verification_stores_code_and_message_atomically,
            a_verification_keeps_the_transaction_its_codes_confirm,
            find_pending_ignores_expired_and_other_api_keys,
            a_verification_started_almost_the_longest_lifetime_ago_is_still_found_pending,
            concurrent_lookups_each_find_their_own_number_s_pending_verification,
            verifications_list_newest_first_per_api_key_with_filters_and_cursor,
            count_check_stops_at_max_checks,
            concurrent_count_checks_never_exceed_max,
            conclude_happens_exactly_once_under_concurrency,
            add_code_respects_interval_and_max_sends,
            concurrent_add_codes_send_one_code,
            conclude_stops_the_codes_not_yet_sent,
            a_counted_right_check_approves_after_the_lock_but_not_after_other_ends,
            acquire_admits_max_sends_per_window_then_says_when,
            acquire_counts_nothing_when_one_limit_is_full,
            concurrent_acquires_never_exceed_max,
            concurrent_sends_refused_by_their_number_use_nothing_of_the_api_key,
            a_window_forgets_expired_sends_in_bulk_and_a_lowered_limit_waits_for_enough_of_them,
            // FraudStore
            code_events_are_counted_per_key_in_the_hour_the_code_was_asked_for,
            concurrent_code_counts_lose_none,
            counts_older_than_the_baseline_are_forgotten,
            a_block_is_placed_once_renewed_while_in_force_and_heals,
            an_admins_block_is_never_overridden_by_the_guard_and_unblock_lifts_it,
            the_safe_list_adds_replaces_and_removes_entries,
            decisions_are_listed_newest_first_with_filters_and_cursor,
            policy_modes_set_at_run_time_read_back_and_replace,
            a_verification_keeps_the_risk_it_was_started_with,
            a_verification_s_finding_joins_the_decision_log_in_its_own_write,
            // VerifyServiceStore
            verify_services_are_kept_per_account_and_listed_oldest_first,
            a_verify_service_is_updated_and_deleted_only_through_its_own_account,
            // WorkflowStore
            a_workflow_step_is_due_after_its_delay_and_held_by_one_claim_until_its_lease_ends,
            an_undelivered_or_failed_step_makes_the_next_step_due_at_once,
            a_step_is_taken_once_counts_a_send_and_ends_the_workflow_after_the_last,
            no_step_is_taken_once_the_verification_ended_or_after_a_stop,
            concurrent_step_claims_never_share_a_workflow,
            attempts_show_each_codes_channel_delivery_and_the_one_that_approved,
            spend_reservations_stop_at_the_cap_and_name_the_scope,
            concurrent_spend_reservations_never_pass_the_cap,
            // WebhookStore
            webhook_endpoints_are_kept_per_api_key_updated_and_deleted,
            a_concluded_verification_is_an_event_for_each_endpoint_receiving_its_type,
            a_refused_conclusion_records_no_event,
            a_messages_statuses_are_events_numbered_in_order,
            a_fraud_block_is_a_blocked_event,
            expired_verifications_are_noticed_once_for_keys_that_want_it,
            a_delivery_is_claimed_once_retried_and_finished_only_by_its_claim,
            failing_and_disabled_endpoints_are_remembered_and_skipped,
            a_replay_queues_again_every_event_since_a_time,
            an_erased_numbers_messages_take_their_events_with_them,
            an_endpoints_failing_deliveries_are_listed_with_their_last_answer,
            an_events_objects_read_many_at_once_are_each_as_read_alone,
            a_reservation_is_given_back_when_its_message_ends_unsent_and_kept_when_sent,
            concurrent_reservations_and_give_backs_never_pass_the_cap,
            // MessageReports, StoreHealth
            list_pages_newest_first_and_filters,
            attempts_of_lists_each_messages_attempts_in_order,
            usage_by_day,
            usage_by_template,
            usage_by_country,
            usage_by_status,
            usage_by_api_key,
            a_usage_query_for_one_api_key_counts_only_its_messages,
            error_codes_are_counted_per_group,
            costs_are_summed_exactly_per_group_and_currency,
            charged_prices_are_summed_per_country_and_currency_since_a_time,
            status_counts_and_queue_stats_cover_every_message,
            conversion_by_country_counts_codes_approvals_latencies_and_costs,
            conversion_groups_by_provider_prefix_channel_day_and_api_key,
            a_conversion_query_for_one_api_key_counts_only_its_verifications,
            conversion_and_usage_agree_on_codes_sent_and_their_cost,
            a_migrated_store_has_no_pending_migrations,
            // DataLifecycle
            a_job_lease_is_held_by_one_holder_until_released_or_run_out,
            retention_removes_what_left_the_queue_in_batches_and_the_report_keeps_its_counts,
            retention_removes_old_verifications_with_their_codes_and_decisions,
            bodies_of_plain_messages_are_emptied_once_old_but_never_while_queued,
            erasing_a_number_removes_its_rows_of_every_api_key_and_keeps_the_report,
            a_message_erased_in_flight_is_not_stored_again_by_its_finish,
            // Rollups
            a_report_over_folded_and_unfolded_hours_equals_the_raw_one_with_late_receipts,
            removed_verifications_keep_their_conversion_figures_folded_or_not,
        }
    };
    (@tests $fresh:path; $($behaviour:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $behaviour() {
                let (store, _guard) = $fresh().await;
                $crate::testkit::$behaviour(store).await;
            }
        )*
    };
    (@names; $($behaviour:ident),* $(,)?) => {
        [$(stringify!($behaviour)),*]
    };
}

mod delivery;
pub use delivery::*;

const LEASE: Duration = Duration::from_secs(30);

/// 2026-01-01T12:00:00Z.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_268_800, 0).unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

pub fn phone(number: &str) -> PhoneNumber {
    PhoneNumber::parse(number).unwrap()
}

fn alice() -> PhoneNumber {
    phone("+15551234567")
}

/// An ordinary notification from the `shop` API key, due at `created_at`.
pub fn notification(created_at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        to: alice(),
        channel: Channel::Sms,
        template: Some("order-shipped".into()),
        body: "Your order is on its way".into(),
        locale: None,
        content_sid: None,
        sensitive: false,
        segments: 1,
        priority: Priority::Normal,
        api_key: "shop".into(),
        idempotency_key: None,
        idempotency_fingerprint: None,
        verification_id: None,
        send_before: None,
        request_id: Some("req-notification".into()),
        traceparent: Some(TRACEPARENT.into()),
        created_at,
    }
}

/// A verification of Alice's number by the `auth` API key, started at `at` under the default
/// policy (5 checks, 5 sends, 10 minutes).
pub fn verification(at: DateTime<Utc>) -> Verification {
    Verification::start(
        alice(),
        Channel::Sms,
        "auth".into(),
        &VerificationPolicy::default(),
        at,
    )
}

/// The message that carries a code of `verification`, created at `at`.
pub fn code_message(verification: &Verification, at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        to: verification.to.clone(),
        channel: verification.channel,
        template: Some("two-factor-auth".into()),
        body: "Your code is 402913".into(),
        locale: None,
        content_sid: None,
        sensitive: true,
        segments: 1,
        priority: Priority::Verification,
        api_key: verification.api_key.clone(),
        idempotency_key: None,
        idempotency_fingerprint: None,
        verification_id: Some(verification.id),
        send_before: Some(verification.expires_at),
        request_id: None,
        traceparent: None,
        created_at: at,
    }
}

pub fn code_hash(seed: u8) -> CodeHash {
    CodeHash::from_bytes(vec![seed; 32])
}

/// The W3C `traceparent` of the request that queued [`notification`], and of a send span.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SEND_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";

fn attempt(number: u32, at: DateTime<Utc>, outcome: AttemptOutcome) -> Attempt {
    let failed = outcome != AttemptOutcome::Sent;
    Attempt {
        number,
        // Attempts of one message may go through different providers (failover).
        provider: Some(if failed { "twilio" } else { "vonage" }.to_owned()),
        started_at: at,
        finished_at: at + secs(1),
        outcome,
        http_status: Some(if failed { 503 } else { 201 }),
        error_code: failed.then(|| "20503".to_owned()),
        error_message: failed.then(|| "service unavailable".to_owned()),
        traceparent: (!failed).then(|| SEND_TRACEPARENT.to_owned()),
    }
}

/// The attempt a claim records for a lapsed lease: from its claim to its lease's end.
fn lost(number: u32, claimed_at: DateTime<Utc>, lapsed_at: DateTime<Utc>) -> Attempt {
    Attempt {
        number,
        provider: None,
        started_at: claimed_at,
        finished_at: lapsed_at,
        outcome: AttemptOutcome::Lost,
        http_status: None,
        error_code: None,
        error_message: Some("the worker sending it was lost".into()),
        traceparent: None,
    }
}

fn sent(provider_sid: &str) -> DispatchOutcome {
    DispatchOutcome::Sent {
        provider: "twilio".into(),
        provider_sid: provider_sid.into(),
        segments: None,
        price: None,
    }
}

fn retry_at(at: DateTime<Utc>) -> DispatchOutcome {
    DispatchOutcome::Retry {
        at,
        error_code: Some("20503".into()),
        error_message: "service unavailable".into(),
    }
}

async fn enqueue_new<S: StoreUnderTest>(store: &S, message: NewMessage) -> Message {
    match store.enqueue(message).await.unwrap() {
        Enqueued::Created(message) => message,
        existing @ Enqueued::Existing(_) => panic!("expected a new message, got {existing:?}"),
    }
}

async fn message<S: StoreUnderTest>(store: &S, id: MessageId) -> Message {
    MessageStore::get(store, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("message {id} is not stored"))
}

async fn stored_verification<S: StoreUnderTest>(store: &S, id: VerificationId) -> Verification {
    VerificationStore::get(store, id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("verification {id} is not stored"))
}

async fn claim_one<S: StoreUnderTest>(store: &S, now: DateTime<Utc>) -> ClaimedMessage {
    let mut claimed = store.claim_due(now, 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one due message at {now}");
    claimed.remove(0)
}

fn ids(claimed: &[ClaimedMessage]) -> Vec<MessageId> {
    claimed.iter().map(|claimed| claimed.message.id).collect()
}

async fn create_verification<S: StoreUnderTest>(
    store: &S,
    verification: &Verification,
    seed: u8,
) -> Message {
    store
        .create(
            verification,
            code_hash(seed),
            code_message(verification, verification.created_at),
            None,
        )
        .await
        .unwrap()
}

/// Status filters see a pending verification past its expiry as `expired`, as clients do.
pub async fn verifications_list_newest_first_per_api_key_with_filters_and_cursor<
    S: StoreUnderTest,
>(
    store: S,
) {
    let old = verification(t0());
    let approved = Verification {
        to: phone("+447700900123"),
        ..verification(t0() + secs(60))
    };
    let pending = verification(t0() + secs(1200));
    let other_key = Verification {
        api_key: "shop".into(),
        ..verification(t0() + secs(1300))
    };
    for (seed, each) in [&old, &approved, &pending, &other_key]
        .into_iter()
        .enumerate()
    {
        create_verification(&store, each, u8::try_from(seed).unwrap()).await;
    }
    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0() + secs(90))
        .await
        .unwrap());
    let all = VerificationFilter {
        api_key: Some("auth".into()),
        status: None,
        to: None,
        since: None,
        until: None,
        before: None,
        limit: 10,
        // `old` has expired by now (10 minutes), still `pending` in its row.
        now: t0() + secs(1250),
    };
    let listed = |filter: VerificationFilter| {
        let store = store.clone();
        async move {
            let found = store.list(&filter).await.unwrap();
            found.iter().map(|v| v.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(all.clone()).await,
        vec![pending.id, approved.id, old.id]
    );
    let expired = VerificationFilter {
        status: Some(VerificationStatus::Expired),
        ..all.clone()
    };
    assert_eq!(listed(expired).await, vec![old.id]);
    let still_pending = VerificationFilter {
        status: Some(VerificationStatus::Pending),
        ..all.clone()
    };
    assert_eq!(listed(still_pending).await, vec![pending.id]);
    let to_london = VerificationFilter {
        to: Some(phone("+447700900123")),
        ..all.clone()
    };
    assert_eq!(listed(to_london).await, vec![approved.id]);
    // An operator's search by number, under every key.
    let every_key = VerificationFilter {
        api_key: None,
        to: Some(alice()),
        ..all.clone()
    };
    assert_eq!(
        listed(every_key).await,
        vec![other_key.id, pending.id, old.id]
    );
    // The dashboard's first page: no condition at all.
    let everything = VerificationFilter {
        api_key: None,
        ..all.clone()
    };
    assert_eq!(
        listed(everything).await,
        vec![other_key.id, pending.id, approved.id, old.id]
    );
    let range = VerificationFilter {
        since: Some(t0() + secs(60)),
        until: Some(t0() + secs(1200)),
        ..all.clone()
    };
    assert_eq!(listed(range).await, vec![approved.id]);
    let first_page = VerificationFilter {
        limit: 2,
        ..all.clone()
    };
    assert_eq!(listed(first_page).await, vec![pending.id, approved.id]);
    let next_page = VerificationFilter {
        before: Some(VerificationCursor {
            created_at: approved.created_at,
            id: approved.id,
        }),
        ..all
    };
    assert_eq!(listed(next_page).await, vec![old.id]);
}

pub async fn enqueue_then_get_round_trips<S: StoreUnderTest>(store: S) {
    let new = NewMessage {
        idempotency_key: Some("order-1".into()),
        send_before: Some(t0() + secs(3600)),
        segments: 3,
        ..notification(t0())
    };
    let created = enqueue_new(&store, new.clone()).await;
    assert_eq!(created.id, new.id);
    assert_eq!(created.to, new.to);
    assert_eq!(created.channel, new.channel);
    assert_eq!(created.template, new.template);
    assert_eq!(created.body, new.body);
    assert_eq!(created.segments, 3);
    assert_eq!(created.priority, Priority::Normal);
    assert_eq!(created.status, MessageStatus::Queued);
    assert_eq!(created.api_key, "shop");
    assert_eq!(created.idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(created.verification_id, None);
    assert_eq!(created.send_before, new.send_before);
    assert_eq!(created.provider, None);
    assert_eq!(created.provider_sid, None);
    assert_eq!(created.error_code, None);
    assert_eq!(created.error_message, None);
    assert_eq!(created.attempt_count, 0);
    assert_eq!(created.next_attempt_at, t0());
    assert_eq!(created.request_id.as_deref(), Some("req-notification"));
    assert_eq!(created.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(created.created_at, t0());
    assert_eq!(created.updated_at, t0());
    assert_eq!(message(&store, new.id).await, created);

    let whatsapp = NewMessage {
        to: phone("+442079460958"),
        channel: Channel::Whatsapp,
        template: None,
        body: "Grüße 👋".into(),
        priority: Priority::Verification,
        ..notification(t0() + secs(1))
    };
    let created = enqueue_new(&store, whatsapp.clone()).await;
    assert_eq!(created.to, whatsapp.to);
    assert_eq!(created.channel, Channel::Whatsapp);
    assert_eq!(created.template, None);
    assert_eq!(created.body, "Grüße 👋");
    assert_eq!(created.priority, Priority::Verification);
    assert_eq!(message(&store, whatsapp.id).await, created);

    let unknown = MessageId::generate();
    assert_eq!(MessageStore::get(&store, unknown).await.unwrap(), None);
    assert!(store.attempts(new.id).await.unwrap().is_empty());
    assert!(store.attempts(unknown).await.unwrap().is_empty());
}

/// The original comes back with the fingerprint stored with its key, which the use case
/// compares with the new request's.
pub async fn idempotency_key_returns_the_original<S: StoreUnderTest>(store: S) {
    let first = NewMessage {
        idempotency_key: Some("order-7".into()),
        idempotency_fingerprint: Some("fingerprint-of-the-first".into()),
        ..notification(t0())
    };
    let original = enqueue_new(&store, first).await;
    let again = NewMessage {
        body: "A different body".into(),
        idempotency_key: Some("order-7".into()),
        idempotency_fingerprint: Some("fingerprint-of-another".into()),
        ..notification(t0() + secs(5))
    };
    let answer = store.enqueue(again.clone()).await.unwrap();
    assert_eq!(
        answer.message().idempotency_fingerprint.as_deref(),
        Some("fingerprint-of-the-first")
    );
    assert_eq!(answer, Enqueued::Existing(original.clone()));
    assert_eq!(MessageStore::get(&store, again.id).await.unwrap(), None);
    // Found by its key, for its own API key only.
    assert_eq!(
        store.by_idempotency_key("shop", "order-7").await.unwrap(),
        Some(original)
    );
    assert_eq!(
        store.by_idempotency_key("auth", "order-7").await.unwrap(),
        None
    );
    assert_eq!(
        store.by_idempotency_key("shop", "order-8").await.unwrap(),
        None
    );
}

pub async fn same_idempotency_key_from_another_api_key_is_a_new_message<S: StoreUnderTest>(
    store: S,
) {
    let shop = NewMessage {
        idempotency_key: Some("order-7".into()),
        ..notification(t0())
    };
    let billing = NewMessage {
        api_key: "billing".into(),
        idempotency_key: Some("order-7".into()),
        ..notification(t0())
    };
    let from_shop = enqueue_new(&store, shop).await;
    let from_billing = enqueue_new(&store, billing).await;
    assert_ne!(from_shop.id, from_billing.id);
}

pub async fn messages_without_an_idempotency_key_are_never_merged<S: StoreUnderTest>(store: S) {
    let first = enqueue_new(&store, notification(t0())).await;
    let second = enqueue_new(&store, notification(t0())).await;
    assert_ne!(first.id, second.id);
    assert_eq!(store.claim_due(t0(), 10, LEASE).await.unwrap().len(), 2);
}

pub async fn concurrent_enqueues_with_one_idempotency_key_store_one_message<S: StoreUnderTest>(
    store: S,
) {
    let attempts: Vec<NewMessage> = (0..8)
        .map(|_| NewMessage {
            idempotency_key: Some("signup-42".into()),
            ..notification(t0())
        })
        .collect();
    let tasks: Vec<_> = attempts
        .iter()
        .cloned()
        .map(|new| {
            let store = store.clone();
            tokio::spawn(async move { store.enqueue(new).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let created: Vec<&Enqueued> = answers
        .iter()
        .filter(|answer| matches!(answer, Enqueued::Created(_)))
        .collect();
    assert_eq!(created.len(), 1, "exactly one enqueue creates: {answers:?}");
    let kept = created[0].message().id;
    assert!(answers.iter().all(|answer| answer.message().id == kept));
    for new in attempts.iter().filter(|new| new.id != kept) {
        assert_eq!(MessageStore::get(&store, new.id).await.unwrap(), None);
    }
}

/// Many enqueues at once (a store may write them together): each is answered with its own
/// message as stored, and a repeat of a key stored by another of them gets that one.
pub async fn concurrent_enqueues_each_store_their_own_message<S: StoreUnderTest>(store: S) {
    let keyed = |n: u32| NewMessage {
        idempotency_key: Some(format!("order-{}", n % 10)),
        body: format!("message {n}"),
        ..notification(t0() + secs(i64::from(n)))
    };
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let (store, new) = (store.clone(), keyed(n));
            tokio::spawn(async move { (new.clone(), store.enqueue(new).await.unwrap()) })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let (new, answer) = task.await.unwrap();
        let stored = message(&store, answer.message().id).await;
        assert_eq!(
            answer.message(),
            &stored,
            "the answer is the message as stored"
        );
        assert_eq!(stored.idempotency_key, new.idempotency_key);
        if let Enqueued::Created(message) = answer {
            created += 1;
            assert_eq!(message.id, new.id);
            assert_eq!(message.body, new.body);
            assert_eq!(message.status, MessageStatus::Queued);
        }
    }
    assert_eq!(created, 10, "one message per idempotency key");
}

pub async fn claim_orders_by_priority_then_age<S: StoreUnderTest>(store: S) {
    let newer = enqueue_new(&store, notification(t0() + secs(1))).await;
    let urgent = enqueue_new(
        &store,
        NewMessage {
            priority: Priority::Verification,
            ..notification(t0() + secs(2))
        },
    )
    .await;
    let older = enqueue_new(&store, notification(t0())).await;

    let first = store.claim_due(t0() + secs(10), 2, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![urgent.id, older.id]);
    let rest = store.claim_due(t0() + secs(10), 2, LEASE).await.unwrap();
    assert_eq!(ids(&rest), vec![newer.id]);
}

pub async fn claim_skips_messages_not_yet_due<S: StoreUnderTest>(store: S) {
    let later = enqueue_new(&store, notification(t0() + secs(60))).await;
    assert!(store.claim_due(t0(), 10, LEASE).await.unwrap().is_empty());
    assert!(store
        .claim_due(t0() + secs(59), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let claimed = store.claim_due(t0() + secs(60), 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![later.id]);
}

pub async fn claim_leases_the_message_and_counts_the_attempt<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    assert!(store.claim_due(t0(), 0, LEASE).await.unwrap().is_empty());
    let claimed = claim_one(&store, t0()).await;
    assert_eq!(claimed.message.id, queued.id);
    assert_eq!(claimed.message.status, MessageStatus::Sending);
    assert_eq!(claimed.message.attempt_count, 1);
    assert_eq!(claimed.message.body, queued.body);
    let stored = message(&store, queued.id).await;
    assert_eq!(stored.status, MessageStatus::Sending);
    assert_eq!(stored.attempt_count, 1);
    assert!(store
        .claim_due(t0() + secs(29), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

pub async fn concurrent_claims_never_share_a_message<S: StoreUnderTest>(store: S) {
    let mut queued = HashSet::new();
    for n in 0..40 {
        queued.insert(enqueue_new(&store, notification(t0() + secs(n))).await.id);
    }
    let now = t0() + secs(60);
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(now, 3, LEASE).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(ids(&batch));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<MessageId> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a message was claimed twice");
    assert_eq!(distinct, queued);
}

pub async fn expired_lease_is_claimed_again_and_the_old_claim_cannot_finish<S: StoreUnderTest>(
    store: S,
) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let first = claim_one(&store, t0()).await;
    assert!(store
        .claim_due(t0() + secs(10), 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    let second = claim_one(&store, t0() + secs(30)).await;
    assert_eq!(second.message.id, queued.id);
    assert_eq!(second.message.attempt_count, 2);
    assert_ne!(second.claim, first.claim);

    let stale = store
        .finish(
            first.claim,
            queued.id,
            Some(attempt(1, t0(), AttemptOutcome::Sent)),
            sent("SMstale"),
            t0() + secs(31),
        )
        .await
        .unwrap();
    assert!(!stale, "a stale claim must not finish");
    let untouched = message(&store, queued.id).await;
    assert_eq!(untouched.status, MessageStatus::Sending);
    assert_eq!(untouched.provider_sid, None);
    // The first claim's attempt is the second claim's record of it, nothing the stale
    // worker wrote.
    assert_eq!(
        store.attempts(queued.id).await.unwrap(),
        vec![lost(1, t0(), t0() + secs(30))]
    );

    let current = store
        .finish(
            second.claim,
            queued.id,
            Some(attempt(2, t0() + secs(30), AttemptOutcome::Sent)),
            sent("SMcurrent"),
            t0() + secs(32),
        )
        .await
        .unwrap();
    assert!(current);
    let finished = message(&store, queued.id).await;
    assert_eq!(finished.status, MessageStatus::Sent);
    assert_eq!(finished.provider_sid.as_deref(), Some("SMcurrent"));
}

/// The messages whose workers were lost longest ago go first, whatever their priority: a
/// claim reads the lapsed leases in the order they ran out, through the in-flight index.
pub async fn lapsed_leases_are_claimed_again_the_longest_lapsed_first<S: StoreUnderTest>(store: S) {
    let urgent = enqueue_new(
        &store,
        NewMessage {
            priority: Priority::Verification,
            ..notification(t0())
        },
    )
    .await;
    let older = enqueue_new(&store, notification(t0())).await;
    let newer = enqueue_new(&store, notification(t0() + secs(1))).await;
    for (lease, id) in [(60, urgent.id), (40, older.id), (20, newer.id)] {
        let claimed = store.claim_due(t0() + secs(1), 1, Duration::from_secs(lease));
        assert_eq!(ids(&claimed.await.unwrap()), vec![id]);
    }
    // Within one claim, the queue's order: the older first.
    let first = store.claim_due(t0() + secs(100), 2, LEASE).await.unwrap();
    assert_eq!(ids(&first), vec![older.id, newer.id]);
    let rest = store.claim_due(t0() + secs(100), 2, LEASE).await.unwrap();
    assert_eq!(ids(&rest), vec![urgent.id]);
}

/// A message whose every worker dies (a panic between the provider call and `finish`) is not
/// sent forever: each lapsed lease is a `lost` attempt, and the claim that finds
/// `RETRY_MAX_ATTEMPTS` of them fails the message instead of handing it out, without taking
/// another message's place. A lease that lapses after a recorded failure counts the same.
pub async fn a_message_whose_workers_keep_dying_fails_after_max_attempts<S: StoreUnderTest>(
    store: S,
) {
    let verification = verification(t0());
    let code = create_verification(&store, &verification, 1).await;
    let other = enqueue_new(&store, notification(t0())).await;
    let budget = ClaimBudget {
        max_attempts: Some(3),
        ..capped(1, None, None)
    };
    let claim = |at| {
        let (store, budget) = (store.clone(), budget.clone());
        async move { store.claim_within(at, &budget).await.unwrap().messages }
    };

    // The first worker answers with a temporary failure; the next two die.
    let first = claim(t0()).await;
    assert_eq!(ids(&first), vec![code.id]);
    assert!(store
        .finish(
            first[0].claim,
            code.id,
            Some(attempt(1, t0(), AttemptOutcome::RetryableError)),
            retry_at(t0() + secs(5)),
            t0() + secs(1),
        )
        .await
        .unwrap());
    assert_eq!(ids(&claim(t0() + secs(5)).await), vec![code.id]);
    let third = claim(t0() + secs(35)).await;
    assert_eq!(ids(&third), vec![code.id]);
    assert_eq!(third[0].message.attempt_count, 3);

    // Three attempts made, the last one lost too: failed, and the other message claimed.
    let fourth = claim(t0() + secs(65)).await;
    assert_eq!(ids(&fourth), vec![other.id]);
    let failed = message(&store, code.id).await;
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("the worker sending it was lost 2 times")
    );
    assert_eq!(failed.attempt_count, 3);
    assert_eq!(failed.body, "", "a failed code's body is forgotten");
    let attempts = store.attempts(code.id).await.unwrap();
    assert_eq!(
        attempts,
        vec![
            attempt(1, t0(), AttemptOutcome::RetryableError),
            lost(2, t0() + secs(5), t0() + secs(35)),
            lost(3, t0() + secs(35), t0() + secs(65)),
        ]
    );
    assert!(store
        .finish(
            fourth[0].claim,
            other.id,
            None,
            sent("SMother"),
            t0() + secs(66)
        )
        .await
        .unwrap());
    assert!(claim(t0() + secs(600)).await.is_empty());
}

pub async fn finish_records_attempts_and_sets_status<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let first = claim_one(&store, t0()).await;
    let failed_attempt = attempt(1, t0(), AttemptOutcome::RetryableError);
    assert!(store
        .finish(
            first.claim,
            queued.id,
            Some(failed_attempt.clone()),
            retry_at(t0() + secs(10)),
            t0() + secs(1),
        )
        .await
        .unwrap());
    let requeued = message(&store, queued.id).await;
    assert_eq!(requeued.status, MessageStatus::Queued);
    assert_eq!(requeued.error_code.as_deref(), Some("20503"));
    assert_eq!(
        requeued.error_message.as_deref(),
        Some("service unavailable")
    );
    assert_eq!(requeued.next_attempt_at, t0() + secs(10));
    assert_eq!(requeued.attempt_count, 1);
    assert_eq!(requeued.updated_at, t0() + secs(1));

    let second = claim_one(&store, t0() + secs(10)).await;
    assert_eq!(second.message.attempt_count, 2);
    let sent_attempt = attempt(2, t0() + secs(10), AttemptOutcome::Sent);
    assert!(store
        .finish(
            second.claim,
            queued.id,
            Some(sent_attempt.clone()),
            DispatchOutcome::Sent {
                provider: "vonage".into(),
                provider_sid: "SM0123456789abcdef".into(),
                segments: Some(2),
                price: None,
            },
            t0() + secs(11),
        )
        .await
        .unwrap());
    let finished = message(&store, queued.id).await;
    assert_eq!(finished.status, MessageStatus::Sent);
    assert_eq!(finished.provider.as_deref(), Some("vonage"));
    assert_eq!(finished.provider_sid.as_deref(), Some("SM0123456789abcdef"));
    assert_eq!(finished.segments, 2);
    assert_eq!(finished.error_code, None);
    assert_eq!(finished.error_message, None);
    assert_eq!(finished.attempt_count, 2);
    assert_eq!(finished.body, queued.body);
    assert_eq!(
        store.attempts(queued.id).await.unwrap(),
        vec![failed_attempt, sent_attempt.clone()]
    );

    let repeated = store
        .finish(
            second.claim,
            queued.id,
            Some(sent_attempt),
            sent("SMagain"),
            t0() + secs(12),
        )
        .await
        .unwrap();
    assert!(!repeated, "a released claim must not finish twice");
    assert_eq!(store.attempts(queued.id).await.unwrap().len(), 2);
    assert!(store
        .claim_due(t0() + secs(3600), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

/// Many sends finishing at once (a store may record them together): each outcome lands on its
/// own message with its own attempt, and a finish with a claim that is not the message's
/// records nothing, even beside the genuine one.
pub async fn concurrent_finishes_each_record_their_own_outcome<S: StoreUnderTest>(store: S) {
    for n in 0..40 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let claimed = store.claim_due(t0() + secs(60), 40, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 40);
    let at = t0() + secs(60);
    let finish = |n: usize, id: MessageId, claim: ClaimToken| {
        let store = store.clone();
        let (outcome, kind) = if n % 2 == 0 {
            (sent(&format!("SM{n:032}")), AttemptOutcome::Sent)
        } else {
            let failed = DispatchOutcome::Failed {
                error_code: Some("21211".into()),
                error_message: format!("refused {n}"),
            };
            (failed, AttemptOutcome::PermanentError)
        };
        tokio::spawn(async move {
            store
                .finish(claim, id, Some(attempt(1, at, kind)), outcome, at)
                .await
                .unwrap()
        })
    };
    let mut tasks = Vec::new();
    for (n, claimed) in claimed.iter().enumerate() {
        let id = claimed.message.id;
        tasks.push((n, id, true, finish(n, id, claimed.claim)));
        // Every fourth message also gets a finish from another claim.
        if n % 4 == 3 {
            let other = ClaimToken(claimed.claim.0 ^ 1);
            tasks.push((n, id, false, finish(n + 1, id, other)));
        }
    }
    for (n, id, genuine, task) in tasks {
        assert_eq!(
            task.await.unwrap(),
            genuine,
            "finish {n} (genuine: {genuine})"
        );
        let stored = message(&store, id).await;
        let attempts = store.attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1, "message {n}: {attempts:?}");
        if n % 2 == 0 {
            assert_eq!(stored.status, MessageStatus::Sent, "message {n}");
            assert_eq!(stored.provider_sid, Some(format!("SM{n:032}")));
            assert_eq!(attempts[0].outcome, AttemptOutcome::Sent);
        } else {
            assert_eq!(stored.status, MessageStatus::Failed, "message {n}");
            assert_eq!(stored.error_message, Some(format!("refused {n}")));
            assert_eq!(attempts[0].outcome, AttemptOutcome::PermanentError);
        }
    }
}

pub async fn retry_requeues_at_the_given_time<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    assert!(store
        .finish(
            claimed.claim,
            queued.id,
            Some(attempt(1, t0(), AttemptOutcome::RetryableError)),
            retry_at(t0() + secs(60)),
            t0() + secs(1),
        )
        .await
        .unwrap());
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0() + secs(60)));
    assert!(store
        .claim_due(t0() + secs(59), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let again = claim_one(&store, t0() + secs(60)).await;
    assert_eq!(again.message.id, queued.id);
    assert_eq!(again.message.attempt_count, 2);
}

pub async fn permanent_failure_fails_the_message_for_good<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    assert!(store
        .finish(
            claimed.claim,
            queued.id,
            Some(attempt(1, t0(), AttemptOutcome::PermanentError)),
            DispatchOutcome::Failed {
                error_code: Some("21211".into()),
                error_message: "invalid 'To' phone number".into(),
            },
            t0() + secs(1),
        )
        .await
        .unwrap());
    let failed = message(&store, queued.id).await;
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("21211"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("invalid 'To' phone number")
    );
    assert_eq!(store.next_due_at().await.unwrap(), None);
    assert!(store
        .claim_due(t0() + secs(3600), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

/// A long message of which the provider sent some parts, then refused the rest.
pub async fn a_partly_sent_message_fails_keeping_what_went_out<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    let price = domain::Price {
        amount: "0.0333".into(),
        currency: "EUR".into(),
    };
    assert!(store
        .finish(
            claimed.claim,
            queued.id,
            Some(attempt(1, t0(), AttemptOutcome::PermanentError)),
            DispatchOutcome::PartlySent {
                provider: "vonage".into(),
                provider_sid: "0A0000001234".into(),
                price: Some(price.clone()),
                error_code: Some("9".into()),
                error_message: "Partner quota exceeded (vonage sent 1 of 2 parts)".into(),
            },
            t0() + secs(1),
        )
        .await
        .unwrap());
    let failed = message(&store, queued.id).await;
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("9"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("Partner quota exceeded (vonage sent 1 of 2 parts)")
    );
    assert_eq!(failed.provider.as_deref(), Some("vonage"));
    assert_eq!(failed.provider_sid.as_deref(), Some("0A0000001234"));
    assert_eq!(failed.price, Some(price));
    assert_eq!(store.next_due_at().await.unwrap(), None);
}

pub async fn expired_message_finishes_without_an_attempt<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    assert!(store
        .finish(
            claimed.claim,
            queued.id,
            None,
            DispatchOutcome::Expired,
            t0()
        )
        .await
        .unwrap());
    assert_eq!(
        message(&store, queued.id).await.status,
        MessageStatus::Expired
    );
    assert!(store.attempts(queued.id).await.unwrap().is_empty());
}

/// An idle dispatcher sleeps until then, so a crashed worker's lease must wake it too.
pub async fn next_due_at_is_the_earliest_queued_message_or_lease_end<S: StoreUnderTest>(store: S) {
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let later = enqueue_new(&store, notification(t0() + secs(5))).await;
    let sooner = enqueue_new(&store, notification(t0() + secs(2))).await;
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0() + secs(2)));

    let claimed = store.claim_due(t0() + secs(5), 10, LEASE).await.unwrap();
    assert_eq!(ids(&claimed), vec![sooner.id, later.id]);
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0() + secs(35)));

    let [first, second] = claimed.as_slice() else {
        unreachable!()
    };
    assert!(store
        .finish(first.claim, sooner.id, None, sent("SMa"), t0() + secs(6))
        .await
        .unwrap());
    assert!(store
        .finish(
            second.claim,
            later.id,
            None,
            retry_at(t0() + secs(100)),
            t0() + secs(6)
        )
        .await
        .unwrap());
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0() + secs(100)));
}

pub async fn final_one_time_code_message_loses_its_body<S: StoreUnderTest>(store: S) {
    let finish_with = |outcome: DispatchOutcome, body_kept: bool| {
        let store = store.clone();
        async move {
            let started = verification(t0());
            let code = create_verification(&store, &started, 1).await;
            let claimed = claim_one(&store, t0()).await;
            assert_eq!(claimed.message.id, code.id);
            assert_eq!(claimed.message.body, "Your code is 402913");
            assert!(store
                .finish(claimed.claim, code.id, None, outcome.clone(), t0())
                .await
                .unwrap());
            let finished = message(&store, code.id).await;
            let expected = if body_kept { code.body.as_str() } else { "" };
            assert_eq!(finished.body, expected, "after {outcome:?}");
            if body_kept {
                // Leave the queue as empty as it was for the next case.
                let claimed = claim_one(&store, t0() + secs(60)).await;
                assert!(store
                    .finish(claimed.claim, code.id, None, sent("SMlater"), t0())
                    .await
                    .unwrap());
                assert_eq!(message(&store, code.id).await.body, "");
            }
        }
    };
    finish_with(retry_at(t0() + secs(60)), true).await;
    finish_with(sent("SMcode"), false).await;
    finish_with(
        DispatchOutcome::Failed {
            error_code: Some("21610".into()),
            error_message: "unsubscribed recipient".into(),
        },
        false,
    )
    .await;
    finish_with(DispatchOutcome::Expired, false).await;

    let ordinary = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    assert!(store
        .finish(claimed.claim, ordinary.id, None, sent("SMplain"), t0())
        .await
        .unwrap());
    assert_eq!(message(&store, ordinary.id).await.body, ordinary.body);
}

/// A message from a sensitive template keeps its body while it may be sent again, and loses it
/// once sent or failed, as a code's does; so does a code's message stored before the
/// `sensitive` flag existed (migration 0013), whose flag is unset.
pub async fn final_sensitive_message_loses_its_body<S: StoreUnderTest>(store: S) {
    let reset = |at| NewMessage {
        template: Some("password-reset".into()),
        body: "Your reset code is 771204".into(),
        sensitive: true,
        ..notification(at)
    };
    let first = enqueue_new(&store, reset(t0())).await;
    assert!(first.sensitive);
    assert!(message(&store, first.id).await.sensitive);
    let claimed = claim_one(&store, t0()).await;
    assert!(claimed.message.sensitive);
    assert!(store
        .finish(
            claimed.claim,
            first.id,
            None,
            retry_at(t0() + secs(60)),
            t0()
        )
        .await
        .unwrap());
    assert_eq!(
        message(&store, first.id).await.body,
        first.body,
        "a retry sends it"
    );
    let claimed = claim_one(&store, t0() + secs(60)).await;
    assert_eq!(claimed.message.body, first.body);
    assert!(store
        .finish(
            claimed.claim,
            first.id,
            None,
            sent("SMreset"),
            t0() + secs(60)
        )
        .await
        .unwrap());
    let sent_once = message(&store, first.id).await;
    assert_eq!(
        (sent_once.status, sent_once.body.as_str()),
        (MessageStatus::Sent, "")
    );

    let second = enqueue_new(&store, reset(t0() + secs(61))).await;
    let claimed = claim_one(&store, t0() + secs(61)).await;
    let failed = DispatchOutcome::Failed {
        error_code: Some("21610".into()),
        error_message: "unsubscribed recipient".into(),
    };
    assert!(store
        .finish(claimed.claim, second.id, None, failed, t0() + secs(62))
        .await
        .unwrap());
    assert_eq!(message(&store, second.id).await.body, "");

    let started = verification(t0() + secs(63));
    let unflagged = NewMessage {
        sensitive: false,
        ..code_message(&started, started.created_at)
    };
    let code = store
        .create(&started, code_hash(1), unflagged, None)
        .await
        .unwrap();
    let claimed = claim_one(&store, t0() + secs(63)).await;
    assert_eq!(claimed.message.id, code.id);
    assert!(claimed.message.is_sensitive());
    assert!(store
        .finish(claimed.claim, code.id, None, sent("SMold"), t0() + secs(64))
        .await
        .unwrap());
    assert_eq!(message(&store, code.id).await.body, "");
}

/// A verification by call is stored as one, its code's message with the language it is spoken
/// in; a WhatsApp code with the approved template that carries it and its variables, which are
/// the code and go with the body once sent.
pub async fn a_call_keeps_its_language_and_a_whatsapp_code_its_template_until_sent<
    S: StoreUnderTest,
>(
    store: S,
) {
    let call = Verification {
        channel: Channel::Voice,
        ..verification(t0())
    };
    let spoken = NewMessage {
        template: Some("two-factor-auth-voice.fr".into()),
        body: "Votre code est : 4, 0, 2, 9, 1, 3.".into(),
        locale: Some("fr".into()),
        segments: 0,
        ..code_message(&call, t0())
    };
    let created = store
        .create(&call, code_hash(1), spoken.clone(), None)
        .await
        .unwrap();
    assert_eq!(created.channel, Channel::Voice);
    assert_eq!(created.locale.as_deref(), Some("fr"));
    assert_eq!(message(&store, created.id).await, created);
    let stored = VerificationStore::get(&store, call.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.channel, Channel::Voice);

    let whatsapp = NewMessage {
        channel: Channel::Whatsapp,
        template: None,
        body: r#"{"1":"402913"}"#.into(),
        locale: Some("pt-BR".into()),
        content_sid: Some("HX0123456789abcdef0123456789abcdef".into()),
        sensitive: true,
        ..notification(t0() + secs(1))
    };
    let queued = enqueue_new(&store, whatsapp.clone()).await;
    assert_eq!(queued.content_sid, whatsapp.content_sid);
    assert_eq!(queued.locale.as_deref(), Some("pt-BR"));
    assert_eq!(message(&store, queued.id).await, queued);

    let claimed = claim_one(&store, t0() + secs(2)).await;
    assert_eq!(claimed.message.id, created.id, "the code first");
    assert_eq!(claimed.message.body, spoken.body);
    assert!(store
        .finish(
            claimed.claim,
            created.id,
            None,
            sent("CAcall"),
            t0() + secs(2)
        )
        .await
        .unwrap());
    let claimed = claim_one(&store, t0() + secs(3)).await;
    assert_eq!(claimed.message.content_sid, whatsapp.content_sid);
    assert_eq!(claimed.message.body, whatsapp.body);
    assert!(store
        .finish(
            claimed.claim,
            queued.id,
            None,
            sent("SMtemplate"),
            t0() + secs(3)
        )
        .await
        .unwrap());
    for id in [created.id, queued.id] {
        let finished = message(&store, id).await;
        assert_eq!(finished.body, "", "the code leaves with the body");
    }
    assert_eq!(
        message(&store, queued.id).await.content_sid,
        whatsapp.content_sid
    );
}

fn capped(limit: u32, max_in_flight: Option<u32>, per_second: Option<u32>) -> ClaimBudget {
    ClaimBudget {
        limit,
        lease: LEASE,
        max_in_flight,
        reserve: 0,
        settling: Vec::new(),
        sender_rate: per_second.map(|per_second| SenderRate {
            sender: "+15005550006".into(),
            per_second,
        }),
        max_attempts: None,
    }
}

/// `DISPATCH_CONCURRENCY` counts every instance's sends: whatever each claimer asks for, the
/// messages `sending` under a live lease stay within the cap; a finished send or a lapsed lease
/// frees a place.
pub async fn claims_stop_at_the_shared_in_flight_cap<S: StoreUnderTest>(store: S) {
    for n in 0..10 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(10);
    let first = store
        .claim_within(now, &capped(2, Some(3), None))
        .await
        .unwrap();
    assert_eq!(first.messages.len(), 2);
    assert_eq!(first.limited_by, None);
    let second = store
        .claim_within(now, &capped(10, Some(3), None))
        .await
        .unwrap();
    assert_eq!(second.messages.len(), 1);
    assert_eq!(second.limited_by, Some(ClaimLimit::InFlight));
    let full = store
        .claim_within(now, &capped(10, Some(3), None))
        .await
        .unwrap();
    assert!(full.messages.is_empty());
    assert_eq!(full.limited_by, Some(ClaimLimit::InFlight));

    let done = &first.messages[0];
    assert!(store
        .finish(done.claim, done.message.id, None, sent("SMdone"), now)
        .await
        .unwrap());
    let freed = store
        .claim_within(now, &capped(10, Some(3), None))
        .await
        .unwrap();
    assert_eq!(freed.messages.len(), 1);

    // Leases lapse: their messages no longer count, and are themselves claimed again.
    let later = now + LEASE;
    let after_crash = store
        .claim_within(later, &capped(10, Some(3), None))
        .await
        .unwrap();
    assert_eq!(after_crash.messages.len(), 3);
    assert!(after_crash
        .messages
        .iter()
        .any(|claimed| claimed.message.attempt_count == 2));
}

/// A message whose provider call has returned is left out of the in-flight count while its
/// outcome is recorded; naming one already recorded frees nothing.
pub async fn settling_messages_hold_no_place_under_the_cap<S: StoreUnderTest>(store: S) {
    for n in 0..10 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(10);
    let first = store
        .claim_within(now, &capped(3, Some(3), None))
        .await
        .unwrap();
    assert_eq!(first.messages.len(), 3);
    let (returned, recorded) = (&first.messages[0], &first.messages[1]);
    assert!(store
        .finish(
            recorded.claim,
            recorded.message.id,
            None,
            sent("SMrecorded"),
            now
        )
        .await
        .unwrap());
    let settling = |ids: Vec<MessageId>| ClaimBudget {
        settling: ids,
        ..capped(10, Some(3), None)
    };

    // One place is free (the recorded message's); the returned one frees a second.
    let claimed = store
        .claim_within(
            now,
            &settling(vec![returned.message.id, recorded.message.id]),
        )
        .await
        .unwrap();
    assert_eq!(claimed.messages.len(), 2);
    assert_eq!(claimed.limited_by, Some(ClaimLimit::InFlight));

    // The recorded message was never counted: naming it again frees nothing more.
    let full = store
        .claim_within(now, &settling(vec![recorded.message.id]))
        .await
        .unwrap();
    assert!(
        full.messages.is_empty(),
        "a recorded message freed a place twice"
    );
}

/// A claim's reserve takes messages beyond the cap, which wait for a place: the store says how
/// many places were free, counts the waiting messages as `sending`, and holds every claimer
/// together within the cap plus the reserve.
pub async fn a_reserve_waits_beyond_the_cap_and_is_counted<S: StoreUnderTest>(store: S) {
    for n in 0..10 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(10);
    let reserved = |limit| ClaimBudget {
        reserve: 2,
        ..capped(limit, Some(3), None)
    };
    let first = store.claim_within(now, &reserved(4)).await.unwrap();
    assert_eq!((first.messages.len(), first.places), (4, 3));
    assert_eq!(first.limited_by, None);

    // Three in flight and one waiting: over the cap by one, one more may wait.
    let second = store.claim_within(now, &reserved(4)).await.unwrap();
    assert_eq!((second.messages.len(), second.places), (1, -1));
    assert_eq!(second.limited_by, Some(ClaimLimit::InFlight));
    let full = store.claim_within(now, &reserved(4)).await.unwrap();
    assert!(full.messages.is_empty(), "the reserve grew past its bound");

    // Three sends recorded: of the two waiting, one now has a place; one more is free.
    for (n, done) in first.messages[..3].iter().enumerate() {
        assert!(store
            .finish(
                done.claim,
                done.message.id,
                None,
                sent(&format!("SMdone{n}")),
                now
            )
            .await
            .unwrap());
    }
    let after = store.claim_within(now, &reserved(4)).await.unwrap();
    assert_eq!((after.messages.len(), after.places), (3, 1));
}

pub async fn concurrent_capped_claims_never_exceed_the_cap<S: StoreUnderTest>(store: S) {
    for n in 0..30 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(60);
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_within(now, &capped(4, Some(7), None))
                    .await
                    .unwrap()
                    .messages
                    .len()
            })
        })
        .collect();
    let mut claimed = 0;
    for claimer in claimers {
        claimed += claimer.await.unwrap();
    }
    assert_eq!(claimed, 7, "the cap is shared by concurrent claimers");
}

/// `SENDER_MPS`: a claim books send times one spacing apart, at most a second ahead, and the
/// next claim continues where the last one stopped.
pub async fn a_sender_rate_spaces_send_times_across_claims<S: StoreUnderTest>(store: S) {
    let urgent = enqueue_new(
        &store,
        NewMessage {
            priority: Priority::Verification,
            ..notification(t0() + secs(5))
        },
    )
    .await;
    for n in 0..9 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(10);
    let ms = TimeDelta::milliseconds;
    let first = store
        .claim_within(now, &capped(10, None, Some(4)))
        .await
        .unwrap();
    let send_times: Vec<_> = first.messages.iter().map(|c| c.send_at).collect();
    assert_eq!(
        send_times,
        vec![
            now,
            now + ms(250),
            now + ms(500),
            now + ms(750),
            now + ms(1000)
        ]
    );
    assert_eq!(first.messages[0].message.id, urgent.id, "codes go first");
    assert_eq!(
        first.limited_by,
        Some(ClaimLimit::SenderRate {
            until: now + ms(250)
        })
    );
    let booked_up = store
        .claim_within(now + ms(100), &capped(10, None, Some(4)))
        .await
        .unwrap();
    assert!(booked_up.messages.is_empty());

    let next = store
        .claim_within(now + ms(250), &capped(10, None, Some(4)))
        .await
        .unwrap();
    assert_eq!(next.messages.len(), 1);
    assert_eq!(next.messages[0].send_at, now + ms(1250));

    let other_sender = ClaimBudget {
        sender_rate: Some(SenderRate {
            sender: "MG0123".into(),
            per_second: 4,
        }),
        ..capped(1, None, None)
    };
    let elsewhere = store.claim_within(now, &other_sender).await.unwrap();
    assert_eq!(elsewhere.messages.len(), 1, "each sender has its own rate");
    assert_eq!(elsewhere.messages[0].send_at, now);

    // An idle sender's unused past is no credit for a burst.
    let much_later = now + secs(3600);
    let resumed = store
        .claim_within(much_later, &capped(10, None, Some(4)))
        .await
        .unwrap();
    assert_eq!(resumed.messages.len(), 5);
    assert_eq!(resumed.messages[0].send_at, much_later);
    assert_eq!(resumed.messages[4].send_at, much_later + ms(1000));
}

pub async fn concurrent_claims_share_one_sender_rate<S: StoreUnderTest>(store: S) {
    for n in 0..40 {
        enqueue_new(&store, notification(t0() + secs(n))).await;
    }
    let now = t0() + secs(60);
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_within(now, &capped(10, None, Some(10)))
                    .await
                    .unwrap()
                    .messages
            })
        })
        .collect();
    let mut send_times = Vec::new();
    for claimer in claimers {
        send_times.extend(claimer.await.unwrap().iter().map(|c| c.send_at));
    }
    send_times.sort_unstable();
    let expected: Vec<_> = (0..=10)
        .map(|n| now + TimeDelta::milliseconds(100 * n))
        .collect();
    assert_eq!(send_times, expected, "one schedule across claimers");
}

/// Shutdown hands unsent messages back at once rather than after their lease.
pub async fn release_returns_a_claim_to_the_queue_unsent<S: StoreUnderTest>(store: S) {
    let queued = enqueue_new(&store, notification(t0())).await;
    let claimed = claim_one(&store, t0()).await;
    assert!(store
        .release(claimed.claim, queued.id, t0() + secs(1))
        .await
        .unwrap());
    let released = message(&store, queued.id).await;
    assert_eq!(released.status, MessageStatus::Queued);
    assert_eq!(released.attempt_count, 0, "no attempt was made");
    assert_eq!(released.next_attempt_at, t0() + secs(1));
    assert!(store.attempts(queued.id).await.unwrap().is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), Some(t0() + secs(1)));

    assert!(
        !store
            .release(claimed.claim, queued.id, t0() + secs(1))
            .await
            .unwrap(),
        "a released claim is no longer held"
    );
    let again = claim_one(&store, t0() + secs(1)).await;
    assert_eq!(again.message.attempt_count, 1);
    assert!(store
        .finish(again.claim, queued.id, None, sent("SMx"), t0() + secs(2))
        .await
        .unwrap());
    assert!(!store
        .release(again.claim, queued.id, t0() + secs(3))
        .await
        .unwrap());
    assert_eq!(
        message(&store, queued.id).await.status,
        MessageStatus::Sent,
        "a finished message stays finished"
    );
}

/// PSD2: the amount as the client wrote it, the currency and the payee come back from every
/// read, a counted check's included (the check binds its code to them).
pub async fn a_verification_keeps_the_transaction_its_codes_confirm<S: StoreUnderTest>(store: S) {
    let transaction = domain::Transaction::parse(Some("49.90"), Some("EUR"), Some("Café Zoë"))
        .unwrap()
        .unwrap();
    let confirming = Verification {
        transaction: Some(transaction),
        ..verification(t0())
    };
    let plain = Verification {
        to: PhoneNumber::parse("+15557654321").unwrap(),
        ..verification(t0())
    };
    for started in [&confirming, &plain] {
        store
            .create(started, code_hash(1), code_message(started, t0()), None)
            .await
            .unwrap();
    }
    let read = stored_verification(&store, confirming.id).await;
    assert_eq!(read, confirming);
    let read_transaction = read.transaction.unwrap();
    assert_eq!(read_transaction.amount.as_str(), "49.90");
    assert_eq!(read_transaction.payee.as_str(), "Café Zoë");
    assert_eq!(
        stored_verification(&store, plain.id).await.transaction,
        None
    );
    let pending = store
        .find_pending(&confirming.to, "auth", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.transaction, confirming.transaction);
    let (counted, _) = store
        .count_check(confirming.id, "auth", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.transaction, confirming.transaction);
}

pub async fn create_verification_stores_code_and_message_atomically<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    let new = code_message(&started, t0());
    let queued = store
        .create(&started, code_hash(1), new.clone(), None)
        .await
        .unwrap();
    assert_eq!(queued.id, new.id);
    assert_eq!(queued.status, MessageStatus::Queued);
    assert_eq!(queued.verification_id, Some(started.id));
    assert_eq!(queued.priority, Priority::Verification);
    assert_eq!(queued.send_before, Some(started.expires_at));
    assert_eq!(queued.body, new.body);
    assert_eq!(message(&store, new.id).await, queued);
    assert_eq!(stored_verification(&store, started.id).await, started);
    assert_eq!(
        VerificationStore::get(&store, VerificationId::generate())
            .await
            .unwrap(),
        None
    );
    let (counted, hashes) = store
        .count_check(started.id, "auth", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.check_count, 1);
    assert_eq!(hashes, vec![code_hash(1)]);

    // A message that cannot be stored (its id is taken) takes the verification down with it.
    let taken = enqueue_new(&store, notification(t0())).await;
    let doomed = verification(t0());
    let clashing = NewMessage {
        id: taken.id,
        ..code_message(&doomed, t0())
    };
    assert!(store
        .create(&doomed, code_hash(2), clashing, None)
        .await
        .is_err());
    assert_eq!(
        VerificationStore::get(&store, doomed.id).await.unwrap(),
        None
    );
    assert_eq!(message(&store, taken.id).await, taken);
}

pub async fn find_pending_ignores_expired_and_other_api_keys<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    create_verification(&store, &started, 1).await;
    let other_key = Verification {
        api_key: "other".into(),
        ..verification(t0())
    };
    create_verification(&store, &other_key, 2).await;
    let other_number = Verification {
        to: phone("+442079460958"),
        ..verification(t0())
    };
    create_verification(&store, &other_number, 3).await;

    let now = t0() + secs(60);
    let found = store.find_pending(&alice(), "auth", now).await.unwrap();
    assert_eq!(found, Some(started.clone()));
    let found = store.find_pending(&alice(), "other", now).await.unwrap();
    assert_eq!(found.map(|found| found.id), Some(other_key.id));
    let found = store
        .find_pending(&phone("+442079460958"), "auth", now)
        .await
        .unwrap();
    assert_eq!(found.map(|found| found.id), Some(other_number.id));
    assert_eq!(
        store.find_pending(&alice(), "nobody", now).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .find_pending(&alice(), "auth", started.expires_at)
            .await
            .unwrap(),
        None,
        "a verification is expired from its expiry time on"
    );

    assert!(store
        .conclude(started.id, VerificationStatus::Canceled, now)
        .await
        .unwrap());
    assert_eq!(
        store.find_pending(&alice(), "auth", now).await.unwrap(),
        None
    );
}

/// A store may look for a pending verification only among those whose ids were minted within
/// the longest lifetime before `now` (PostgreSQL reads only their weeks): one started just
/// within it, its id minted then, is still found until it expires.
pub async fn a_verification_started_almost_the_longest_lifetime_ago_is_still_found_pending<
    S: StoreUnderTest,
>(
    store: S,
) {
    let started_at = t0() - Verification::LONGEST_LIFETIME + secs(60);
    let policy = VerificationPolicy {
        lifetime: Verification::LONGEST_LIFETIME,
        ..VerificationPolicy::default()
    };
    let minted = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(started_at.timestamp()).unwrap(),
        0,
    );
    let started = Verification {
        id: VerificationId::from_uuid(uuid::Uuid::new_v7(minted)),
        ..Verification::start(alice(), Channel::Sms, "auth".into(), &policy, started_at)
    };
    create_verification(&store, &started, 1).await;

    let found = store.find_pending(&alice(), "auth", t0()).await.unwrap();
    assert_eq!(found.map(|found| found.id), Some(started.id));
    assert_eq!(
        store
            .find_pending(&alice(), "auth", started.expires_at)
            .await
            .unwrap(),
        None
    );
}

/// Lookups that arrive together (PostgreSQL answers them in one statement) each get their own
/// number's verification, or none.
pub async fn concurrent_lookups_each_find_their_own_number_s_pending_verification<
    S: StoreUnderTest,
>(
    store: S,
) {
    let number = |n: u32| phone(&format!("+4477009{n:05}"));
    let mut started = Vec::new();
    for n in (0..20).step_by(2) {
        let verification = Verification {
            to: number(n),
            ..verification(t0())
        };
        create_verification(&store, &verification, 1).await;
        started.push((n, verification.id));
    }
    let lookups: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let found = store.find_pending(&number(n), "auth", t0() + secs(1)).await;
                (n, found.unwrap().map(|found| found.id))
            })
        })
        .collect();
    for lookup in lookups {
        let (n, found) = lookup.await.unwrap();
        let expected = started.iter().find(|(m, _)| *m == n).map(|(_, id)| *id);
        assert_eq!(found, expected, "the lookup of number {n}");
    }
}

pub async fn count_check_stops_at_max_checks<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    create_verification(&store, &started, 1).await;
    // Another client's check is not counted: it cannot use up this client's attempts.
    assert_eq!(
        store.count_check(started.id, "shop", t0()).await.unwrap(),
        None
    );
    for n in 1..=5 {
        let (counted, hashes) = store
            .count_check(started.id, "auth", t0() + secs(n))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("check {n} must be counted"));
        assert_eq!(counted.check_count, n as u32);
        assert_eq!(counted.status, VerificationStatus::Pending);
        assert_eq!(hashes, vec![code_hash(1)]);
    }
    assert_eq!(
        store
            .count_check(started.id, "auth", t0() + secs(6))
            .await
            .unwrap(),
        None
    );
    assert_eq!(stored_verification(&store, started.id).await.check_count, 5);

    let expiring = verification(t0());
    create_verification(&store, &expiring, 2).await;
    assert_eq!(
        store
            .count_check(expiring.id, "auth", expiring.expires_at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        stored_verification(&store, expiring.id).await.check_count,
        0
    );

    let approved = verification(t0());
    create_verification(&store, &approved, 3).await;
    assert!(store
        .conclude(approved.id, VerificationStatus::Approved, t0())
        .await
        .unwrap());
    assert_eq!(
        store.count_check(approved.id, "auth", t0()).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .count_check(VerificationId::generate(), "auth", t0())
            .await
            .unwrap(),
        None
    );
}

pub async fn concurrent_count_checks_never_exceed_max<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    create_verification(&store, &started, 1).await;
    let checkers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.count_check(started.id, "auth", t0()).await.unwrap() })
        })
        .collect();
    let mut counts = Vec::new();
    for checker in checkers {
        if let Some((counted, _)) = checker.await.unwrap() {
            counts.push(counted.check_count);
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2, 3, 4, 5]);
    assert_eq!(stored_verification(&store, started.id).await.check_count, 5);
}

pub async fn conclude_happens_exactly_once_under_concurrency<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    create_verification(&store, &started, 1).await;
    assert!(
        !store
            .conclude(started.id, VerificationStatus::Pending, t0())
            .await
            .unwrap(),
        "pending to pending is not a conclusion"
    );

    let approvers: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .conclude(started.id, VerificationStatus::Approved, t0() + secs(1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for approver in approvers {
        if approver.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        stored_verification(&store, started.id).await.status,
        VerificationStatus::Approved
    );
    assert!(!store
        .conclude(started.id, VerificationStatus::Canceled, t0() + secs(2))
        .await
        .unwrap());
    assert_eq!(
        stored_verification(&store, started.id).await.status,
        VerificationStatus::Approved
    );
    assert!(!store
        .conclude(
            VerificationId::generate(),
            VerificationStatus::Canceled,
            t0()
        )
        .await
        .unwrap());
}

pub async fn add_code_respects_interval_and_max_sends<S: StoreUnderTest>(store: S) {
    let interval = VerificationPolicy::default().resend_interval;
    let started = verification(t0());
    create_verification(&store, &started, 1).await;

    let too_soon = code_message(&started, t0() + secs(10));
    let refused = store
        .add_code(
            started.id,
            code_hash(2),
            too_soon.clone(),
            t0() + secs(10),
            t0() + secs(10) - interval,
            None,
        )
        .await
        .unwrap();
    assert_eq!(refused, None);
    assert_eq!(MessageStore::get(&store, too_soon.id).await.unwrap(), None);
    assert_eq!(stored_verification(&store, started.id).await, started);

    for send in 2..=5u8 {
        let now = t0() + secs(30) * i32::from(send - 1);
        let new = code_message(&started, now);
        let (resent, queued) = store
            .add_code(
                started.id,
                code_hash(send),
                new.clone(),
                now,
                now - interval,
                None,
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("send {send} must be allowed"));
        assert_eq!(resent.send_count, u32::from(send));
        assert_eq!(resent.last_sent_at, now);
        assert_eq!(resent.check_count, 0);
        assert_eq!(queued.id, new.id);
        assert_eq!(queued.status, MessageStatus::Queued);
        assert_eq!(queued.verification_id, Some(started.id));
        assert_eq!(stored_verification(&store, started.id).await, resent);
    }

    let now = t0() + secs(150);
    let one_too_many = code_message(&started, now);
    let refused = store
        .add_code(
            started.id,
            code_hash(6),
            one_too_many.clone(),
            now,
            now - interval,
            None,
        )
        .await
        .unwrap();
    assert_eq!(refused, None, "five sends at most");
    assert_eq!(
        MessageStore::get(&store, one_too_many.id).await.unwrap(),
        None
    );
    let (_, hashes) = store
        .count_check(started.id, "auth", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hashes,
        (1..=5).map(code_hash).collect::<Vec<_>>(),
        "earlier codes stay valid"
    );

    let expiring = verification(t0());
    create_verification(&store, &expiring, 7).await;
    let at_expiry = expiring.expires_at;
    assert_eq!(
        store
            .add_code(
                expiring.id,
                code_hash(8),
                code_message(&expiring, at_expiry),
                at_expiry,
                at_expiry - interval,
                None,
            )
            .await
            .unwrap(),
        None
    );

    let canceled = verification(t0());
    create_verification(&store, &canceled, 9).await;
    assert!(store
        .conclude(canceled.id, VerificationStatus::Canceled, t0())
        .await
        .unwrap());
    let now = t0() + secs(60);
    assert_eq!(
        store
            .add_code(
                canceled.id,
                code_hash(10),
                code_message(&canceled, now),
                now,
                now - interval,
                None,
            )
            .await
            .unwrap(),
        None
    );
}

pub async fn concurrent_add_codes_send_one_code<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    create_verification(&store, &started, 1).await;
    let now = t0() + secs(30);
    let senders: Vec<_> = (0..5u8)
        .map(|n| {
            let store = store.clone();
            let new = code_message(&started, now);
            tokio::spawn(async move {
                store
                    .add_code(started.id, code_hash(10 + n), new, now, t0(), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for sender in senders {
        if sender.await.unwrap().is_some() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "a resend interval admits one send");
    assert_eq!(stored_verification(&store, started.id).await.send_count, 2);
    let (_, hashes) = store
        .count_check(started.id, "auth", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hashes.len(), 2);
}

pub async fn conclude_stops_the_codes_not_yet_sent<S: StoreUnderTest>(store: S) {
    let started = verification(t0());
    let first = create_verification(&store, &started, 1).await;
    let now = t0() + secs(30);
    let (_, second) = store
        .add_code(
            started.id,
            code_hash(2),
            code_message(&started, now),
            now,
            t0(),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    // The first code is with the provider; the second still queued.
    let in_flight = claim_one(&store, now).await;
    assert_eq!(in_flight.message.id, first.id);
    let ordinary = enqueue_new(&store, notification(t0())).await;

    let approved_at = now + secs(5);
    assert!(store
        .conclude(started.id, VerificationStatus::Approved, approved_at)
        .await
        .unwrap());
    let stopped = message(&store, second.id).await;
    assert_eq!(stopped.status, MessageStatus::Expired);
    assert_eq!(stopped.body, "");
    assert_eq!(
        ids(&store.claim_due(approved_at, 10, LEASE).await.unwrap()),
        vec![ordinary.id],
        "only the ordinary message is still to send"
    );

    // The attempt in flight fails temporarily: its retry must not send the code.
    assert!(store
        .finish(
            in_flight.claim,
            first.id,
            None,
            retry_at(approved_at + secs(10)),
            approved_at + secs(1)
        )
        .await
        .unwrap());
    let retried = claim_one(&store, approved_at + secs(10)).await;
    assert_eq!(retried.message.id, first.id);
    assert!(retried.message.is_stale(approved_at + secs(10)));
}

fn limit(key: &str, max: u32, window_secs: i64) -> RateLimit {
    RateLimit {
        key: key.into(),
        max,
        window: secs(window_secs),
    }
}

pub async fn acquire_admits_max_sends_per_window_then_says_when<S: StoreUnderTest>(store: S) {
    let per_number = [limit("number:+15551234567", 3, 60)];
    for at in [0, 10, 20] {
        assert_eq!(
            store.acquire(&per_number, t0() + secs(at)).await.unwrap(),
            Admission::Admitted
        );
    }
    assert_eq!(
        store.acquire(&per_number, t0() + secs(30)).await.unwrap(),
        Admission::Refused {
            key: "number:+15551234567".into(),
            retry_after: secs(30),
        },
        "room again when the send at 0 s leaves the window at 60 s"
    );
    // The refusal counted nothing: the window slides, it does not restart.
    assert_eq!(
        store.acquire(&per_number, t0() + secs(60)).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        store.acquire(&per_number, t0() + secs(61)).await.unwrap(),
        Admission::Refused {
            key: "number:+15551234567".into(),
            retry_after: secs(9),
        }
    );
    assert_eq!(
        store
            .acquire(&[limit("number:+442079460958", 3, 60)], t0() + secs(61))
            .await
            .unwrap(),
        Admission::Admitted,
        "each key has a window of its own"
    );
}

pub async fn acquire_counts_nothing_when_one_limit_is_full<S: StoreUnderTest>(store: S) {
    let api_key = limit("api-key:auth", 2, 3600);
    let limits = |number: &str| [limit(number, 10, 3600), api_key.clone()];
    for number in ["number:a", "number:b"] {
        assert_eq!(
            store.acquire(&limits(number), t0()).await.unwrap(),
            Admission::Admitted
        );
    }
    assert_eq!(
        store.acquire(&limits("number:c"), t0()).await.unwrap(),
        Admission::Refused {
            key: "api-key:auth".into(),
            retry_after: secs(3600),
        }
    );
    // Number c was not counted: with room for one more, it is admitted exactly once.
    assert_eq!(
        store
            .acquire(&[limit("number:c", 1, 3600)], t0())
            .await
            .unwrap(),
        Admission::Admitted
    );
    assert!(matches!(
        store
            .acquire(&[limit("number:c", 1, 3600)], t0())
            .await
            .unwrap(),
        Admission::Refused { .. }
    ));
}

pub async fn concurrent_acquires_never_exceed_max<S: StoreUnderTest>(store: S) {
    let acquirers: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire(&[limit("api-key:auth", 5, 3600)], t0() + secs(n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for acquirer in acquirers {
        if acquirer.await.unwrap() == Admission::Admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

/// Sends judged together (a store may judge a burst in one go): one refused by its number's
/// limit counts nothing against the API key's, so the API key still admits five others.
pub async fn concurrent_sends_refused_by_their_number_use_nothing_of_the_api_key<
    S: StoreUnderTest,
>(
    store: S,
) {
    let numbers: [&'static str; 9] = ["a", "a", "a", "b", "c", "d", "e", "f", "g"];
    let acquirers: Vec<_> = numbers
        .into_iter()
        .map(|number| {
            let store = store.clone();
            let limits = [
                limit(&format!("number:{number}"), 1, 3600),
                limit("api-key:auth", 5, 3600),
            ];
            tokio::spawn(async move { (number, store.acquire(&limits, t0()).await.unwrap()) })
        })
        .collect();
    let mut admitted = Vec::new();
    for acquirer in acquirers {
        if let (number, Admission::Admitted) = acquirer.await.unwrap() {
            admitted.push(number);
        }
    }
    admitted.sort_unstable();
    admitted.dedup();
    assert_eq!(
        admitted.len(),
        5,
        "five distinct numbers admitted: {admitted:?}"
    );
    let refused = store
        .acquire(
            &[limit("number:h", 1, 3600), limit("api-key:auth", 5, 3600)],
            t0() + secs(1),
        )
        .await
        .unwrap();
    assert!(
        matches!(&refused, Admission::Refused { key, .. } if key == "api-key:auth"),
        "{refused:?}"
    );
}

pub async fn a_window_forgets_expired_sends_in_bulk_and_a_lowered_limit_waits_for_enough_of_them<
    S: StoreUnderTest,
>(
    store: S,
) {
    let key = "api-key:bulk";
    for at in 0..50 {
        assert_eq!(
            store
                .acquire(&[limit(key, 50, 100)], t0() + secs(at))
                .await
                .unwrap(),
            Admission::Admitted
        );
    }
    // At 120 s the sends of 0..=20 s have left the window: room for exactly 21 more.
    for _ in 0..21 {
        assert_eq!(
            store
                .acquire(&[limit(key, 50, 100)], t0() + secs(120))
                .await
                .unwrap(),
            Admission::Admitted
        );
    }
    assert_eq!(
        store
            .acquire(&[limit(key, 50, 100)], t0() + secs(120))
            .await
            .unwrap(),
        Admission::Refused {
            key: key.into(),
            retry_after: secs(1),
        },
        "the oldest send kept, at 21 s, leaves at 121 s"
    );
    // Lowered to 40, the window's 50 sends leave room once 11 have left it: the 11th oldest,
    // sent at 31 s, leaves at 131 s.
    assert_eq!(
        store
            .acquire(&[limit(key, 40, 100)], t0() + secs(120))
            .await
            .unwrap(),
        Admission::Refused {
            key: key.into(),
            retry_after: secs(11),
        }
    );
}

/// The last counted check, wrong, may lock the verification before an earlier counted check
/// with the right code records its approval.
pub async fn a_counted_right_check_approves_after_the_lock_but_not_after_other_ends<
    S: StoreUnderTest,
>(
    store: S,
) {
    let locked = verification(t0());
    create_verification(&store, &locked, 1).await;
    assert!(store
        .conclude(locked.id, VerificationStatus::MaxAttemptsReached, t0())
        .await
        .unwrap());
    assert!(!store
        .conclude(locked.id, VerificationStatus::Canceled, t0())
        .await
        .unwrap());
    assert!(store
        .conclude(locked.id, VerificationStatus::Approved, t0())
        .await
        .unwrap());
    assert!(!store
        .conclude(locked.id, VerificationStatus::Approved, t0())
        .await
        .unwrap());
    assert!(!store
        .conclude(locked.id, VerificationStatus::MaxAttemptsReached, t0())
        .await
        .unwrap());
    assert_eq!(
        stored_verification(&store, locked.id).await.status,
        VerificationStatus::Approved
    );

    for end in [VerificationStatus::Canceled, VerificationStatus::Expired] {
        let ended = verification(t0());
        create_verification(&store, &ended, 2).await;
        assert!(store.conclude(ended.id, end, t0()).await.unwrap());
        assert!(!store
            .conclude(ended.id, VerificationStatus::Approved, t0())
            .await
            .unwrap());
        assert_eq!(stored_verification(&store, ended.id).await.status, end);
    }
}

/// The table of [`store_conformance_tests!`] against the `pub async fn`s of the testkit's files,
/// so that a behaviour written but not listed (and so never run by any store) fails here.
#[cfg(test)]
mod table {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// The names of the `pub async fn`s at the top level of `source` (a line of their own from
    /// its first column, as rustfmt writes them), a signature split over lines included.
    fn public_async_fns(source: &str) -> Vec<String> {
        source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    /// `testkit.rs` and every file under `testkit/`.
    fn testkit_files() -> Vec<PathBuf> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("testkit.rs")];
        let mut nested: Vec<PathBuf> = std::fs::read_dir(src.join("testkit"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "rs"))
            .collect();
        nested.sort();
        files.extend(nested);
        files
    }

    #[test]
    fn the_scan_finds_public_async_fns_only() {
        let source = [
            "pub async fn one<S: StoreUnderTest>(store: S) {}",
            "async fn helper<S>(store: &S) {}",
            "pub fn t0() {}",
            "pub async fn two<",
            "    S: StoreUnderTest,",
            ">(store: S) {}",
            "    pub async fn nested_in_a_module() {}",
        ]
        .join("\n");
        assert_eq!(public_async_fns(&source), ["one", "two"]);
    }

    #[test]
    fn every_public_async_fn_of_the_testkit_is_in_the_conformance_table() {
        let listed: Vec<&str> = crate::store_conformance_tests!(@table [@names]).to_vec();
        let listed_once: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(
            listed_once.len(),
            listed.len(),
            "a behaviour is listed twice"
        );

        let defined: BTreeSet<String> = testkit_files()
            .iter()
            .flat_map(|path| public_async_fns(&std::fs::read_to_string(path).unwrap()))
            .collect();
        // The kit has dozens of behaviours: finding few means the scan is broken.
        assert!(defined.len() >= 50, "found only {defined:?}");

        let unlisted: Vec<&String> = defined
            .iter()
            .filter(|name| !listed_once.contains(name.as_str()))
            .collect();
        assert!(
            unlisted.is_empty(),
            "add these to the table in store_conformance_tests! (or make them private): \
             {unlisted:?}"
        );
        let undefined: Vec<&&str> = listed_once
            .iter()
            .filter(|name| !defined.contains(**name))
            .collect();
        assert!(
            undefined.is_empty(),
            "listed but not defined: {undefined:?}"
        );
    }
}
