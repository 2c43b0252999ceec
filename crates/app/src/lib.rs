//! The application: use cases (send, dispatch, verify), the HTTP API, configuration, and the
//! wiring that turns configuration into running adapters.
//!
//! Its folders are its roles: `usecases` ([`Services`], the one door of the HTTP API and the
//! CLI to the use cases, which count themselves in the metrics), `dispatch` (the background
//! workers), `providers` (decorators around the SMS providers), `observability`, `http` (the
//! adapter that speaks HTTP), `dashboard` (the operator's HTML pages, a second inbound adapter)
//! and `wiring` (configuration, the choice of store, the server).
//!
//! This is the only library crate that names concrete adapters: in `wiring`, where
//! configuration picks them, and in `http`'s Twilio status webhook, which reads Twilio's own
//! form. The use cases see ports, and no store adapter's type is part of this crate's API.
//! Nothing else in the workspace may depend on `app` but binaries (`cli`) and the end-to-end
//! tests.

pub mod dashboard;
pub mod dispatch;
pub mod http;
pub mod lifecycle;
pub mod observability;
pub mod providers;
pub mod usecases;
pub mod wiring;

pub use usecases::Services;
pub use wiring::config::Config;
pub use wiring::server::{Server, StartupError};
