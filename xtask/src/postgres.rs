//! Is the PostgreSQL server that the tests will use up? Checked first, so that a stopped server
//! costs one clear sentence instead of a build and a page of failed database tests.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// The server that every machine of this project starts, with trust authentication.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_PORT: u16 = 5432;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `DATABASE_URL` from the environment, or the local default.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// Where a PostgreSQL URL says to connect over TCP.
#[derive(Debug, PartialEq)]
pub(crate) struct TcpAddress {
    host: String,
    port: u16,
}

impl fmt::Display for TcpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The TCP address in a `postgres://` URL, or `None` when it names none (a Unix socket, as in
/// `postgres:///sms?host=/var/run/postgresql`). Only as much parsing as finding host and port
/// needs; the URL is never echoed, as it may hold a password.
pub(crate) fn tcp_address(url: &str) -> anyhow::Result<Option<TcpAddress>> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("DATABASE_URL must be a postgres:// or postgresql:// URL")?;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let host_list = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    // Several hosts are allowed; the first one is where a client tries first.
    let first_host = host_list.split(',').next().unwrap_or_default();

    let (mut host, port) = split_host_port(first_host);
    let mut port = port.map(str::to_owned);
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "host" if host.is_empty() => host = value,
            "port" if port.is_none() => port = Some(value.to_owned()),
            _ => {}
        }
    }

    let names_a_socket = host.starts_with('/') || host.to_ascii_lowercase().starts_with("%2f");
    if host.is_empty() || names_a_socket {
        return Ok(None);
    }
    let port = match port {
        Some(port) => port
            .parse()
            .with_context(|| format!("DATABASE_URL has an invalid port '{port}'"))?,
        None => DEFAULT_PORT,
    };
    Ok(Some(TcpAddress {
        host: host.to_owned(),
        port,
    }))
}

/// `host:port`, `host`, `[ipv6]:port` or `[ipv6]`.
fn split_host_port(host_port: &str) -> (&str, Option<&str>) {
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
        return (host, after.strip_prefix(':'));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    }
}

/// Fails unless something accepts a TCP connection at `address`.
pub(crate) fn check_reachable(address: &TcpAddress) -> anyhow::Result<()> {
    let reachable = (address.host.as_str(), address.port)
        .to_socket_addrs()
        .is_ok_and(|mut socket_addresses| {
            socket_addresses.any(|socket_address| {
                TcpStream::connect_timeout(&socket_address, CONNECT_TIMEOUT).is_ok()
            })
        });
    if !reachable {
        bail!("PostgreSQL is not reachable at {address}: start a local server or set DATABASE_URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::{check_reachable, tcp_address, TcpAddress, DEFAULT_DATABASE_URL};

    fn address(host: &str, port: u16) -> Option<TcpAddress> {
        Some(TcpAddress {
            host: host.to_owned(),
            port,
        })
    }

    #[test]
    fn finds_host_and_port_in_tcp_urls() {
        let cases = [
            (DEFAULT_DATABASE_URL, address("127.0.0.1", 5432)),
            (
                "postgres://app:s3cr%40t@db.internal:6543/sms",
                address("db.internal", 6543),
            ),
            ("postgresql://localhost/sms", address("localhost", 5432)),
            (
                "postgres://u@[::1]:5433/sms?sslmode=disable",
                address("::1", 5433),
            ),
            ("postgres://u@[::1]/sms", address("::1", 5432)),
            ("postgres://a:5001,b:5002/sms", address("a", 5001)),
            (
                "postgres:///sms?host=db.internal&port=5999",
                address("db.internal", 5999),
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(tcp_address(url).unwrap(), expected, "{url}");
        }
    }

    #[test]
    fn a_socket_url_has_no_tcp_address() {
        for url in [
            "postgres:///sms",
            "postgres:///sms?host=/var/run/postgresql",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/sms",
        ] {
            assert_eq!(tcp_address(url).unwrap(), None, "{url}");
        }
    }

    #[test]
    fn a_url_that_is_not_postgres_is_refused() {
        assert!(tcp_address("sqlite://data/sms.db").is_err());
        assert!(tcp_address("postgres://localhost:port/sms").is_err());
    }

    #[test]
    fn an_unreachable_server_fails_with_one_sentence_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);

        let error = check_reachable(&TcpAddress {
            host: "127.0.0.1".to_owned(),
            port,
        })
        .unwrap_err();

        assert_eq!(
            error.to_string(),
            format!(
                "PostgreSQL is not reachable at 127.0.0.1:{port}: start a local server or set DATABASE_URL"
            )
        );
    }

    #[test]
    fn a_listening_server_is_reachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        check_reachable(&TcpAddress {
            host: "127.0.0.1".to_owned(),
            port,
        })
        .unwrap();
    }
}
