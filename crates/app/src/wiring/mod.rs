//! Turning the environment into a running service: configuration, then the adapters it names,
//! the HTTP listener and the background workers.

pub mod config;
pub mod server;
pub mod store;
