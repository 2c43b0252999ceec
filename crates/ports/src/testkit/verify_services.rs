//! Conformance tests of [`VerifyServiceStore`]: the Twilio-compatible API's services are kept
//! per account, read back as written, listed in a stable order, and changed or removed only
//! through their own account.

use domain::CodeLength;
use uuid::Uuid;

use super::{secs, t0, StoreUnderTest};
use crate::VerifyService;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";

fn verify_service(account_sid: &str, friendly_name: &str, created: i64) -> VerifyService {
    VerifyService {
        id: Uuid::now_v7(),
        account_sid: account_sid.to_owned(),
        friendly_name: friendly_name.to_owned(),
        code_length: CodeLength::new(6).unwrap(),
        created_at: t0() + secs(created),
        updated_at: t0() + secs(created),
    }
}

pub async fn verify_services_are_kept_per_account_and_listed_oldest_first<S: StoreUnderTest>(
    store: S,
) {
    let first = verify_service(ACCOUNT, "Acme", 0);
    let second = VerifyService {
        code_length: CodeLength::new(8).unwrap(),
        ..verify_service(ACCOUNT, "Acme Ünïcode ✓", 10)
    };
    let others = verify_service(OTHER_ACCOUNT, "Other", 5);
    // Created out of order: the list follows creation times, not insertion.
    for service in [&second, &others, &first] {
        store.create_service(service).await.unwrap();
    }

    assert_eq!(
        store.service(ACCOUNT, second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.service(OTHER_ACCOUNT, second.id).await.unwrap(), None);
    assert_eq!(store.service(ACCOUNT, Uuid::now_v7()).await.unwrap(), None);

    let all = store.services(ACCOUNT, 0, 50).await.unwrap();
    assert_eq!(all, vec![first.clone(), second.clone()]);
    assert_eq!(store.services(ACCOUNT, 0, 1).await.unwrap(), vec![first]);
    assert_eq!(store.services(ACCOUNT, 1, 1).await.unwrap(), vec![second]);
    assert_eq!(store.services(ACCOUNT, 2, 1).await.unwrap(), vec![]);
    assert_eq!(
        store.services(OTHER_ACCOUNT, 0, 50).await.unwrap(),
        vec![others]
    );
}

pub async fn a_verify_service_is_updated_and_deleted_only_through_its_own_account<
    S: StoreUnderTest,
>(
    store: S,
) {
    let service = verify_service(ACCOUNT, "Acme", 0);
    store.create_service(&service).await.unwrap();

    let renamed = VerifyService {
        friendly_name: "Acme Bank".to_owned(),
        code_length: CodeLength::new(4).unwrap(),
        updated_at: t0() + secs(60),
        ..service.clone()
    };
    let hijacked = VerifyService {
        account_sid: OTHER_ACCOUNT.to_owned(),
        friendly_name: "Hijacked".to_owned(),
        ..service.clone()
    };
    assert!(!store.update_service(&hijacked).await.unwrap());
    assert!(store.update_service(&renamed).await.unwrap());
    assert_eq!(
        store.service(ACCOUNT, service.id).await.unwrap(),
        Some(renamed),
        "the settings change; the creation time stays"
    );

    assert!(!store
        .delete_service(OTHER_ACCOUNT, service.id)
        .await
        .unwrap());
    assert!(store.service(ACCOUNT, service.id).await.unwrap().is_some());
    assert!(store.delete_service(ACCOUNT, service.id).await.unwrap());
    assert_eq!(store.service(ACCOUNT, service.id).await.unwrap(), None);
    assert!(!store.delete_service(ACCOUNT, service.id).await.unwrap());
    assert!(!store
        .update_service(&verify_service(ACCOUNT, "Gone", 0))
        .await
        .unwrap());
}
