//! The background workers that move messages after the request that queued them has been
//! answered: the dispatcher, which sends what is due, and the reconciler, which asks the
//! provider about sends whose status never came back; and how they ride out a database outage
//! (`backoff`, `unrecorded`).

pub mod backoff;
pub mod dispatcher;
pub mod reconcile;
pub mod unrecorded;
