//! End-to-end tests: the whole service on a random port, against a fresh PostgreSQL database
//! and a wiremock Twilio, driven over HTTP as a client team would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_twilio;
mod service;
mod support;

mod api;
mod dispatch;
mod errors;
mod fail_closed;
mod guards;
mod messages;
mod operations;
mod processes;
mod resilience;
mod robustness;
mod secrecy;
mod startup;
mod two_factor;
mod webhooks;
