//! End-to-end tests: the whole service on a random port with a wiremock Twilio, driven over HTTP
//! as a client team would. Most run on SQLite in memory and need no database server
//! (`TestApp::spawn`); what needs PostgreSQL itself (several instances, LISTEN/NOTIFY, races
//! decided by row locks, the processes) runs on a fresh PostgreSQL database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_twilio;
mod service;
mod support;
mod twilio_contract;

mod api;
mod channels;
mod client_webhooks;
mod conversion;
mod dashboard;
mod dashboard_browser;
mod data;
mod dispatch;
mod errors;
mod fail_closed;
mod fraud;
mod fraud_admin;
mod guards;
mod languages;
mod messages;
mod operations;
mod outage;
mod processes;
mod resilience;
mod robustness;
mod secrecy;
mod startup;
mod traces;
mod transactions;
mod twilio_verify;
mod two_factor;
mod webhooks;
mod workflows;
