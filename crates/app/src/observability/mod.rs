//! What an operator watches: Prometheus metrics, readiness, and the log's format.

pub mod health;
pub mod metrics;
pub mod telemetry;
