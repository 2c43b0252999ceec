//! Events sent to client services' webhook endpoints: their types, the retry schedule of a
//! delivery, and which network addresses an endpoint may resolve to (no SSRF into the
//! service's own network). Pure rules; signing and sending are the application's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

crate::id::uuid_id!(
    /// A client's webhook endpoint.
    EndpointId
);

crate::id::uuid_id!(
    /// One event: the same id (the `webhook-id` header) on every delivery of it, replays
    /// included, so that a client can tell a repeat.
    EventId
);

/// What an event reports. The text form is the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    VerificationApproved,
    VerificationCanceled,
    VerificationExpired,
    VerificationMaxAttemptsReached,
    /// The fraud guard refused to send a code.
    VerificationBlocked,
    /// A verification's code went out on another channel after the first one.
    VerificationChannelFallback,
    MessageSent,
    MessageDelivered,
    MessageUndelivered,
    MessageFailed,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::VerificationApproved,
        EventType::VerificationCanceled,
        EventType::VerificationExpired,
        EventType::VerificationMaxAttemptsReached,
        EventType::VerificationBlocked,
        EventType::VerificationChannelFallback,
        EventType::MessageSent,
        EventType::MessageDelivered,
        EventType::MessageUndelivered,
        EventType::MessageFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::VerificationApproved => "verification.approved",
            EventType::VerificationCanceled => "verification.canceled",
            EventType::VerificationExpired => "verification.expired",
            EventType::VerificationMaxAttemptsReached => "verification.max_attempts_reached",
            EventType::VerificationBlocked => "verification.blocked",
            EventType::VerificationChannelFallback => "verification.channel_fallback",
            EventType::MessageSent => "message.sent",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageUndelivered => "message.undelivered",
            EventType::MessageFailed => "message.failed",
        }
    }

    /// Whether the event's object is a message (else a verification, or for
    /// [`EventType::VerificationBlocked`] the fraud guard's decision).
    pub fn is_about_a_message(self) -> bool {
        self.as_str().starts_with("message.")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{0}`")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownEventType(text.to_owned()))
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The waits before each delivery attempt of an event (the first usually 0); once they are
/// used up the delivery has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryScheduleError {
    #[error("it is empty")]
    Empty,
    #[error("`{0}` is not a duration such as 0, 5s, 5m, 2h or 1d")]
    Invalid(String),
}

impl RetrySchedule {
    /// At once, then about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: about 28 hours.
    pub fn standard() -> Self {
        Self(
            [0, 5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    pub fn new(waits: Vec<Duration>) -> Result<Self, RetryScheduleError> {
        if waits.is_empty() {
            return Err(RetryScheduleError::Empty);
        }
        Ok(Self(waits))
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The wait after attempt `made` (1 for the first) failed, before the next; `None` when
    /// that was the last attempt.
    pub fn wait_after(&self, made: u32) -> Option<Duration> {
        self.0.get(usize::try_from(made).ok()?).copied()
    }
}

impl FromStr for RetrySchedule {
    type Err = RetryScheduleError;

    /// A comma-separated list such as `0,5s,5m,30m,2h,5h,10h,10h` (a bare number is seconds).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let waits = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| parse_wait(part).ok_or_else(|| RetryScheduleError::Invalid(part.into())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(waits)
    }
}

fn parse_wait(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

/// Whether a webhook may be sent to `address`: only to the public internet, never to this
/// machine, the private networks around it, or a cloud's metadata service (which answers on a
/// link-local address). IPv4 inside IPv6 (mapped, compatible, NAT64) is judged as IPv4.
pub fn is_public_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local() // 169.254.0.0/16, the metadata service included
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || first == 0x2001 && address.segments()[1] == 0x0db8 // documentation
        || first == 0x0100 && address.segments()[1..4] == [0, 0, 0]) // discard-only
}

/// The IPv4 address an IPv6 one stands for: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), or the well-known NAT64 prefix (`64:ff9b::a.b.c.d`).
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let tail = Ipv4Addr::new(
        (s[6] >> 8) as u8,
        (s[6] & 0xff) as u8,
        (s[7] >> 8) as u8,
        (s[7] & 0xff) as u8,
    );
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, _, _] if !address.is_loopback() && !address.is_unspecified() => {
            Some(tail)
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public_address(text.parse().unwrap())
    }

    #[test]
    fn private_loopback_link_local_cgnat_and_metadata_addresses_are_refused() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!public(refused), "{refused} was taken as public");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for allowed in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(allowed), "{allowed} was refused");
        }
    }

    #[test]
    fn the_retry_schedule_reads_units_and_ends() {
        let schedule: RetrySchedule = "0,5s,5m,30m,2h,5h,10h,10h".parse().unwrap();
        assert_eq!(schedule, RetrySchedule::standard());
        assert_eq!(schedule.attempts(), 8);
        assert_eq!(schedule.wait_after(1), Some(Duration::from_secs(5)));
        assert_eq!(schedule.wait_after(7), Some(Duration::from_secs(36_000)));
        assert_eq!(schedule.wait_after(8), None);
        let short: RetrySchedule = "0, 100ms ,1".parse().unwrap();
        assert_eq!(short.wait_after(1), Some(Duration::from_millis(100)));
        assert!("".parse::<RetrySchedule>().is_err());
        assert!("5 minutes".parse::<RetrySchedule>().is_err());
    }

    #[test]
    fn event_types_read_back_from_their_names() {
        for kind in EventType::ALL {
            assert_eq!(kind.as_str().parse::<EventType>(), Ok(kind));
        }
        assert!("verification.started".parse::<EventType>().is_err());
    }
}
