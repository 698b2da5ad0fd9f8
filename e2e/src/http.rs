//! A tiny blocking HTTP/1.1 client (`Connection: close`): enough to time
//! single requests through a sidecar and to read admin endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An answer (or a transport failure, `status` 0).
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// HTTP status; 0 when the request failed below HTTP.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// Time from connect to the end of the answer.
    pub took: Duration,
}

impl Reply {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `x-shardmesh-error` reason, if the mesh answered.
    pub fn reason(&self) -> Option<&str> {
        self.header("x-shardmesh-error")
    }
}

/// Sends `method path` with `headers` and `body` to `addr`, giving up after `timeout`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Reply {
    let start = Instant::now();
    let mut reply = send(addr, method, path, headers, body, timeout).unwrap_or_default();
    reply.took = start.elapsed();
    reply
}

fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Option<Reply> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.take(8 * 1024 * 1024).read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_string(),
        took: Duration::ZERO,
    })
}

/// How the sidecar behind `admin` sees `pod` (`alive`, `suspect`, `dead`,
/// `left`), `gone` when it is not in its view, `None` when it cannot tell.
pub fn member_health(admin: &str, pod: &str) -> Option<String> {
    let doc = admin_json(admin, "/debug/members")?;
    let m = doc["members"]
        .as_array()?
        .iter()
        .find(|m| m["pod"] == pod)
        .cloned();
    Some(m.map_or("gone".into(), |m| {
        m["health"].as_str().unwrap_or("?").to_string()
    }))
}

/// `GET` on an admin listener, parsed as JSON.
pub fn admin_json(admin: &str, path: &str) -> Option<serde_json::Value> {
    let r = request(admin, "GET", path, &[], "", Duration::from_secs(2));
    (r.status == 200).then(|| serde_json::from_str(&r.body).ok())?
}

/// `GET /metrics` text of an admin listener.
pub fn metrics(admin: &str) -> String {
    request(admin, "GET", "/metrics", &[], "", Duration::from_secs(2)).body
}

/// The value of the series `name{labels}` whose label text contains every
/// item of `contains` (summed over matches).
pub fn metric(text: &str, name: &str, contains: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| contains.iter().all(|c| l.contains(c)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Requests the sidecar at `admin` has answered on its outbound listener.
pub fn outbound_requests(admin: &str) -> f64 {
    metric(
        &metrics(admin),
        "shardmesh_requests_total",
        &["direction=\"outbound\""],
    )
}

/// Waits until the sidecar at `admin` has answered `n` more outbound requests
/// (traffic is flowing); panics after `timeout`.
pub fn wait_traffic(admin: &str, n: f64, timeout: Duration) {
    let base = outbound_requests(admin);
    let ok = crate::poll(timeout, || {
        (outbound_requests(admin) >= base + n).then_some(())
    });
    assert!(
        ok.is_some(),
        "no traffic through {admin} within {timeout:?}"
    );
}
