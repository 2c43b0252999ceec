//! Fallback workflows end to end (see the tests below).
