//! The template crate seen from outside: the built-in texts as a client's phone shows them.

mod built_in;
mod transaction;
