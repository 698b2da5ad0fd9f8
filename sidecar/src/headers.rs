//! Header names of the mesh contract, in one place.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Target service.
pub const SERVICE: HeaderName = HeaderName::from_static("x-shardmesh-service");
/// Default shard key header (a service may name another).
pub const KEY: HeaderName = HeaderName::from_static("x-shardmesh-key");
/// Remaining request deadline in milliseconds.
pub const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-shardmesh-timeout-ms");
/// Marks a non-idempotent-method request as safe to retry.
pub const IDEMPOTENT: HeaderName = HeaderName::from_static("x-shardmesh-idempotent");
/// Reason of a mesh-generated response.
pub const ERROR: HeaderName = HeaderName::from_static("x-shardmesh-error");
/// The pod whose sidecar answered.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-shardmesh-served-by");
/// Shard of the request's key, told to the owner and its app.
pub const SHARD: HeaderName = HeaderName::from_static("x-shardmesh-shard");
/// Ownership epoch of the shard, told to the app for fencing.
pub const EPOCH: HeaderName = HeaderName::from_static("x-shardmesh-epoch");
/// Hops a request has taken between sidecars (forwarding limit).
pub const HOP: HeaderName = HeaderName::from_static("x-shardmesh-hop");
/// On a `no-owner` refusal of a forwarded request: the pod the refusing
/// sidecar names as the owner. A forwarder named there knows the two views
/// disagree and waits for its own to catch up (`gate::BOUNCE_WAIT`).
pub const OWNER: HeaderName = HeaderName::from_static("x-shardmesh-owner");
/// On an app's answer: the app does not hold the request's shard at the
/// request's epoch (a newer owner acquired it, the app restarted, or its
/// state failed), and nothing was applied. An ownership signal, not a
/// failure: the sidecar acquires the shard again at a fresh epoch and the
/// caller's sidecar retries (docs/sharding.md, "Terms that end early").
pub const FENCED: HeaderName = HeaderName::from_static("x-shardmesh-fenced");

/// Hop-by-hop headers (RFC 9110 §7.6.1) that must not cross a proxy, plus
/// those HTTP/2 forbids.
pub const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// A header name from the wire. The mesh's own names, on most requests
/// and not standard names, come from constants instead of a fresh
/// allocation each when they arrive in lowercase (as HTTP/2 and our own
/// sidecars send them).
pub fn name_from_bytes(name: &[u8]) -> Option<HeaderName> {
    let known = match name {
        b"x-shardmesh-service" => SERVICE,
        b"x-shardmesh-key" => KEY,
        b"x-shardmesh-timeout-ms" => TIMEOUT_MS,
        b"x-shardmesh-idempotent" => IDEMPOTENT,
        b"x-shardmesh-shard" => SHARD,
        b"x-shardmesh-epoch" => EPOCH,
        b"x-shardmesh-hop" => HOP,
        b"x-shardmesh-served-by" => SERVED_BY,
        _ => return HeaderName::from_bytes(name).ok(),
    };
    Some(known)
}

/// A header value from the wire as a slice of `head`, the shared copy of
/// the message head that `buf` (where the parser found `value`) held: one
/// copy per head instead of an allocation per value.
pub fn value_in(head: &Bytes, buf: &[u8], value: &[u8]) -> Option<HeaderValue> {
    let start = (value.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(value.len())?;
    if end > head.len() {
        return None;
    }
    HeaderValue::from_maybe_shared(head.slice(start..end)).ok()
}

/// A `content-length` value on the wire: digits only (no sign, no list),
/// at most 19 so it fits a u64. Shared by the listener's request parser and
/// the app client's response parser.
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether a `transfer-encoding` value ends in `chunked`: only the last
/// coding decides how the body is framed.
pub fn is_chunked(coding: &HeaderValue) -> bool {
    coding
        .to_str()
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// Appends one `name: value` line of an HTTP/1.1 head.
pub fn put_field(out: &mut bytes::BytesMut, name: &[u8], value: &[u8]) {
    use bytes::BufMut;
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Whether `name` is a hop-by-hop header of [`HOP_BY_HOP`]. Standard names
/// compare as small integers, so the common miss costs little.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including those named by `Connection`.
///
/// Runs on every proxied request and response, where usually none of these
/// is present: one scan over the names (no hashing) decides, instead of a
/// hashed `remove` per name, which profiling showed as a top cost of a hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut connection = false;
    let mut any = false;
    for k in headers.keys() {
        if is_hop_by_hop(k) {
            any = true;
            connection |= *k == http::header::CONNECTION;
        }
    }
    if !any {
        return;
    }
    if !connection {
        remove_present(headers, &HOP_BY_HOP);
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Removes every header of `names` that `headers` holds, hashing only for
/// those present: one scan over the request's names instead of a hashed
/// look-up per name (most requests carry none of them).
pub fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    // Each round removes one name, so this ends within `names.len()` rounds.
    for _ in 0..names.len() {
        let Some(found) = headers.keys().find(|k| names.contains(k)).cloned() else {
            return;
        };
        headers.remove(&found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_named_and_standard_hop_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn strips_standard_hop_headers_without_connection() {
        let mut h = http::HeaderMap::new();
        h.insert("keep-alive", "5".parse().unwrap());
        h.insert(http::header::TE, "trailers".parse().unwrap());
        h.append(http::header::UPGRADE, "a".parse().unwrap());
        h.append(http::header::UPGRADE, "b".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn mesh_names_parse_in_any_case_and_values_share_the_head() {
        assert_eq!(name_from_bytes(b"X-Shardmesh-Key"), Some(KEY));
        assert_eq!(
            name_from_bytes(b"x-shardmesh-other").unwrap(),
            "x-shardmesh-other"
        );
        assert_eq!(name_from_bytes(b"host"), Some(http::header::HOST));
        assert_eq!(name_from_bytes(b"bad name"), None);
        let buf = b"k: value".to_vec();
        let head = Bytes::copy_from_slice(&buf);
        assert_eq!(value_in(&head, &buf, &buf[3..]).unwrap(), "value");
        let elsewhere = b"value";
        assert_eq!(value_in(&head, &buf, elsewhere), None);
        assert_eq!(value_in(&head, &buf, b"bad\x01"), None);
    }

    #[test]
    fn removes_only_present_names() {
        let mut h = http::HeaderMap::new();
        h.insert(HOP, "1".parse().unwrap());
        h.insert(SHARD, "3".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        remove_present(&mut h, &[HOP, SHARD, EPOCH]);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
        remove_present(&mut h, &[HOP, SHARD, EPOCH]);
        assert_eq!(h.len(), 1);
    }
}
