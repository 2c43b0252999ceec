//! The SQLite store: the conformance kit every store passes, on a file (several connections
//! racing for the write lock) and in memory, then what only SQLite does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod sqlite;
