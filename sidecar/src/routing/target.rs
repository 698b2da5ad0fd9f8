//! Finds the target of a request: which service, and which shard key.
//! Location transparency: the app names a service and a key, never a pod.

use std::borrow::Cow;

use http::{header, HeaderMap, Request};

use crate::headers;
use crate::reason::{MeshFailure, Reason};
use crate::routing::table::{RoutingTable, ServiceRoutes};

/// Longest accepted shard key; keys are identifiers, not payloads.
pub const MAX_KEY_BYTES: usize = 1024;

/// Where a request is going.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The destination service.
    pub service: String,
    /// The shard key, if the request has one.
    pub key: Option<Vec<u8>>,
}

/// The service named by `x-shardmesh-service` or by `Host: NAME.shardmesh`
/// (borrowed from the header when it needs no change: no allocation on the
/// inbound hot path).
pub fn service_name(headers: &HeaderMap) -> Result<Cow<'_, str>, MeshFailure> {
    if let Some(v) = headers.get(headers::SERVICE) {
        let name = v
            .to_str()
            .map_err(|_| bad("x-shardmesh-service is not ASCII"))?;
        let name = name.trim();
        if name.is_empty() || name.len() > 63 {
            return Err(bad("x-shardmesh-service must be 1-63 characters"));
        }
        return Ok(Cow::Borrowed(name));
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if let Some(name) = host.strip_suffix(".shardmesh") {
            if !name.is_empty() && name.len() <= 63 && !name.contains('.') {
                return Ok(Cow::Owned(name.to_ascii_lowercase()));
            }
        }
    }
    Err(bad(
        "name the target service with the x-shardmesh-service header or Host: NAME.shardmesh",
    ))
}

/// The request's shard key: the service's key header first, then its path template.
pub fn shard_key<B>(
    req: &Request<B>,
    routes: &ServiceRoutes,
) -> Result<Option<Vec<u8>>, MeshFailure> {
    if let Some(v) = req.headers().get(&routes.key_header) {
        let key = v.as_bytes();
        if key.is_empty() {
            return Err(bad(format!("{} is empty", routes.key_header)));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(bad(format!(
                "{} is longer than {MAX_KEY_BYTES} bytes",
                routes.key_header
            )));
        }
        return Ok(Some(key.to_vec()));
    }
    if let Some(template) = &routes.key_from_path {
        if let Some(key) = template.extract(req.uri().path()) {
            if key.len() > MAX_KEY_BYTES {
                return Err(bad(format!(
                    "path key is longer than {MAX_KEY_BYTES} bytes"
                )));
            }
            return Ok(Some(key.as_bytes().to_vec()));
        }
    }
    Ok(None)
}

/// The service named by an absolute-form request target
/// (`GET http://bank.shardmesh/accounts/1`, what HTTP clients send when the
/// sidecar is configured as their HTTP proxy).
fn service_from_uri<B>(req: &Request<B>) -> Option<String> {
    let host = req.uri().host()?;
    let name = host.strip_suffix(".shardmesh")?;
    (!name.is_empty() && name.len() <= 63 && !name.contains('.')).then(|| name.to_ascii_lowercase())
}

/// Resolves service and key against the current table.
pub fn resolve<B>(req: &Request<B>, table: &RoutingTable) -> Result<Target, MeshFailure> {
    let service = match service_from_uri(req) {
        Some(s) if !req.headers().contains_key(headers::SERVICE) => s,
        _ => service_name(req.headers())?.into_owned(),
    };
    let routes = table.service(&service).ok_or_else(|| {
        MeshFailure::new(
            Reason::UnknownService,
            format!("no service {service:?} in the mesh view"),
        )
    })?;
    let key = shard_key(req, routes)?;
    Ok(Target { service, key })
}

fn bad(message: impl Into<String>) -> MeshFailure {
    MeshFailure::new(Reason::BadRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::table::tests::two_member_table;

    fn req(headers: &[(&str, &str)], path: &str) -> Request<()> {
        let mut b = Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn service_from_header_or_host() {
        let t = two_member_table();
        let r = resolve(&req(&[("x-shardmesh-service", "bank")], "/"), &t).unwrap();
        assert_eq!(r.service, "bank");
        assert_eq!(r.key, None);
        let r = resolve(&req(&[("host", "bank.shardmesh:7400")], "/accounts/7"), &t).unwrap();
        assert_eq!(
            r,
            Target {
                service: "bank".into(),
                key: Some(b"7".to_vec())
            }
        );
    }

    #[test]
    fn absolute_form_target_names_the_service() {
        let t = two_member_table();
        let r = resolve(&req(&[], "http://bank.shardmesh/accounts/9"), &t).unwrap();
        assert_eq!(
            r,
            Target {
                service: "bank".into(),
                key: Some(b"9".to_vec())
            }
        );
    }

    #[test]
    fn key_header_wins_over_path() {
        let t = two_member_table();
        let r = resolve(
            &req(
                &[("x-shardmesh-service", "bank"), ("x-shardmesh-key", "k1")],
                "/accounts/7",
            ),
            &t,
        )
        .unwrap();
        assert_eq!(r.key, Some(b"k1".to_vec()));
    }

    #[test]
    fn missing_or_unknown_service_is_named() {
        let t = two_member_table();
        let e = resolve(&req(&[], "/"), &t).unwrap_err();
        assert_eq!(e.reason, Reason::BadRequest);
        let e = resolve(&req(&[("host", "example.com")], "/"), &t).unwrap_err();
        assert_eq!(e.reason, Reason::BadRequest);
        let e = resolve(&req(&[("x-shardmesh-service", "carts")], "/"), &t).unwrap_err();
        assert_eq!(e.reason, Reason::UnknownService);
    }

    #[test]
    fn oversized_or_empty_key_is_bad_request() {
        let t = two_member_table();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let e = resolve(
            &req(
                &[("x-shardmesh-service", "bank"), ("x-shardmesh-key", &long)],
                "/",
            ),
            &t,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::BadRequest);
        let e = resolve(
            &req(
                &[("x-shardmesh-service", "bank"), ("x-shardmesh-key", "")],
                "/",
            ),
            &t,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::BadRequest);
    }
}
