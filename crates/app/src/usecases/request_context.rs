//! The API request being served, as ambient context: its id, and the API key that made it once
//! authenticated (its name, and whether it is an admin key). Set by the HTTP layer around each
//! request (a tokio task-local), read where a message is queued (so that the id is stored with
//! it and the dispatcher logs it) and by the request metrics (so that they count by key name).
//! Outside a request, all are absent.

use std::future::Future;
use std::sync::{Arc, OnceLock};

tokio::task_local! {
    static CURRENT: Arc<RequestContext>;
}

#[derive(Debug)]
pub struct RequestContext {
    id: String,
    api_key: OnceLock<String>,
    admin: OnceLock<bool>,
}

impl RequestContext {
    pub fn new(id: String) -> Arc<Self> {
        Arc::new(Self {
            id,
            api_key: OnceLock::new(),
            admin: OnceLock::new(),
        })
    }

    /// The name of the API key that authenticated the request, if one did.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.get().map(String::as_str)
    }

    /// Runs `future` as the handling of this request.
    pub async fn scope<F: Future>(self: Arc<Self>, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

/// The id of the request being served.
pub fn request_id() -> Option<String> {
    CURRENT.try_with(|context| context.id.clone()).ok()
}

/// The name of the API key the request being served authenticated with, if any.
pub fn api_key() -> Option<String> {
    CURRENT
        .try_with(|context| context.api_key().map(str::to_owned))
        .ok()
        .flatten()
}

/// Whether the request being served authenticated with an admin key (`ADMIN_API_KEYS`), which
/// may see and act on every API key's messages. False outside a request, and before or
/// without authentication.
pub fn is_admin() -> bool {
    CURRENT
        .try_with(|context| context.admin.get().copied().unwrap_or(false))
        .unwrap_or(false)
}

/// Records which API key (by name) the request being served authenticated with, and whether
/// it is an admin key.
pub fn record_api_key(name: &str, admin: bool) {
    let _ = CURRENT.try_with(|context| {
        let _ = context.api_key.set(name.to_owned());
        let _ = context.admin.set(admin);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_context_is_visible_inside_its_scope_only() {
        assert_eq!(request_id(), None);
        let context = RequestContext::new("req-42".into());
        let inside = context
            .clone()
            .scope(async {
                assert!(!is_admin(), "not before authentication");
                record_api_key("billing", true);
                (request_id(), is_admin())
            })
            .await;
        assert_eq!(inside, (Some("req-42".to_owned()), true));
        assert_eq!(context.api_key(), Some("billing"));
        assert_eq!(request_id(), None);
        assert!(!is_admin());
    }
}
