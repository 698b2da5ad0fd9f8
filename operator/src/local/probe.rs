//! A tiny HTTP/1.1 GET client for the sidecars' admin endpoints (loopback,
//! small bodies, `Connection: close`), and the bits of `/metrics` the table
//! and `status` show.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer read; admin documents are a few KiB.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// `GET http://addr/path`: `(status, body)`, or `None` on any failure or
/// after `timeout`. Runs on a blocking thread (plain std sockets with
/// timeouts), so a stopped sidecar delays only its own probe.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || get_blocking(&addr, &path, timeout))
        .await
        .ok()
        .flatten()
}

/// The blocking `GET` behind [`get`].
pub fn get_blocking(addr: &str, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.take(MAX_BODY).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A sample of a Prometheus text exposition: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// `{...}` content, unparsed.
    pub labels: &'a str,
    /// Value.
    pub value: f64,
}

/// The samples of `text` (comments skipped, unparsable lines ignored).
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Some(Sample {
                name,
                labels,
                value,
            })
        })
}

/// The value of label `key` in an unparsed label set.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// Requests this sidecar has served inbound (to its app), all codes.
pub fn inbound_requests(metrics: &str) -> f64 {
    samples(metrics)
        .filter(|s| s.name == "shardmesh_requests_total")
        .filter(|s| label(s.labels, "direction") == Some("inbound"))
        .map(|s| s.value)
        .sum()
}

/// Peers whose breaker is not closed: `(peer, "open" | "half-open")`.
pub fn breakers(metrics: &str) -> Vec<(String, &'static str)> {
    samples(metrics)
        .filter(|s| s.name == "shardmesh_circuit_breaker_state" && s.value > 0.0)
        .map(|s| {
            let peer = label(s.labels, "peer").unwrap_or("?").to_string();
            (peer, if s.value >= 2.0 { "open" } else { "half-open" })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        shardmesh_requests_total{code=\"200\",direction=\"inbound\",reason=\"\",service=\"bank\"} 7\n\
        shardmesh_requests_total{code=\"503\",direction=\"inbound\",reason=\"overloaded\",service=\"bank\"} 3\n\
        shardmesh_requests_total{code=\"200\",direction=\"outbound\",reason=\"\",service=\"bank\"} 100\n\
        shardmesh_circuit_breaker_state{peer=\"bank-1\"} 2\n\
        shardmesh_circuit_breaker_state{peer=\"bank-2\"} 0\n\
        shardmesh_gossip_suspicions_total 4\n";

    #[test]
    fn counts_inbound_requests_of_every_code() {
        assert_eq!(inbound_requests(TEXT), 10.0);
    }

    #[test]
    fn lists_breakers_that_are_not_closed() {
        assert_eq!(breakers(TEXT), vec![("bank-1".to_string(), "open")]);
    }

    #[test]
    fn reads_unlabelled_samples() {
        let s: Vec<_> = samples(TEXT)
            .filter(|s| s.name == "shardmesh_gossip_suspicions_total")
            .collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].value, 4.0);
    }
}
