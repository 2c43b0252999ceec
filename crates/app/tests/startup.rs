//! The service binary as an operator starts it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn an_invalid_variable_stops_startup_with_one_sentence_naming_it() {
    for (variable, value) in [
        ("LOG_FORMAT", "xml"),
        ("DISPATCH_CONCURRENCY", "0"),
        ("BIND_ADDR", "nowhere"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sms-notify-server"))
            .env_clear()
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("invalid configuration: {variable}: ")),
            "{stderr}"
        );
    }
}
