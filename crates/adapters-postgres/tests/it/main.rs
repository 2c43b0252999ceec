//! The PostgreSQL store against a real server: the conformance kit every store passes, then
//! what only PostgreSQL does (notifications, migrating at start, send limits judged per burst).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acquire;
mod conformance;
mod partitions;
mod postgres;
