//! The use cases against a real store (SQLite in memory) and a clock the test moves, so that
//! time-dependent rules are tested without waiting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod verification;
