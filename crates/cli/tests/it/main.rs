//! The `sms-notify` binary driven as an operator would.
