//! The background workers that move messages after the request that queued them has been
//! answered: the dispatcher, which sends what is due; the reconciler, which asks the
//! provider about sends whose status never came back; the workflows' worker, which sends a
//! verification's next channel when its step failed or went unanswered; the deliverer of
//! client webhooks; and how they ride out a database outage (`backoff`, `unrecorded`).

pub mod backoff;
pub mod client_webhooks;
pub mod dispatcher;
pub mod reconcile;
pub mod unrecorded;
pub mod workflows;
