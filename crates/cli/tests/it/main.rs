//! The `sms-notify` binary driven as an operator would: built, run with environment variables
//! in a directory of its own, against wiremock standing in for Twilio.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bulk;
mod check;
mod commands;
mod fraud;
mod logs;
mod manual;
mod openapi;
mod readme;
mod render;
mod send;
mod support;
mod verify;
