//! What an operator watches: Prometheus metrics, readiness, the log's format, and traces.

pub mod health;
pub mod metrics;
pub mod telemetry;
pub mod traces;
