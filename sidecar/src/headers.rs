//! Header names of the mesh contract, in one place.

use http::{HeaderMap, HeaderName};

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

/// Removes hop-by-hop headers, including those named by `Connection`.
///
/// Runs on every proxied request, where usually none of these is present:
/// one scan over the names (no hashing) replaces a hashed `remove` per
/// name, which profiling showed as a top cost of a hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| *k == http::header::CONNECTION) {
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
