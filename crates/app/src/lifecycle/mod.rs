//! What happens to stored data as it ages: the retention job, which removes what is older than
//! `RETENTION_DAYS` and empties bodies older than `MESSAGE_BODY_RETENTION_HOURS`, and the
//! rollup job, which folds clean hours into the reports' rollups, each on one instance at a
//! time. (Erasing one number on request is a use case: `usecases::erasure`.)

pub mod retention;
pub mod rollups;
