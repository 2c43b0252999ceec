//! Providers the application makes from others or stands in for: failover across the configured
//! providers, test numbers that never reach one, the console of a run without credentials, and
//! the stand-in of a deployment that names none. Each implements `ports::SmsProvider`, so the
//! dispatcher cannot tell them from a real one.

pub mod console;
pub mod failover;
pub mod missing;
pub mod test_numbers;
