//! The use cases the HTTP API and the CLI call: send a message, start, check and cancel a
//! verification, with what they need around them (API keys, one-time codes, the guards in front
//! of every code, the request being served).

pub mod auth;
pub mod codes;
pub mod guards;
pub mod messaging;
pub mod request_context;
pub mod verify;
