//! End-to-end tests: the whole service on a random port, against a fresh PostgreSQL database
//! and a wiremock Twilio, driven over HTTP as a client team would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api;
mod errors;
mod messages;
mod operations;
mod two_factor;
