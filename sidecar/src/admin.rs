//! The admin listener: `/metrics`, `/live`, `/ready`, `/drain`,
//! `/debug/members`, `/debug/shards`. Kept apart from the data path so
//! probes and scrapes work while the proxy is overloaded.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::body::RequestBody;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::watch;

use crate::body::{full, BoxBody};
use crate::drain::DrainControl;
use crate::proxy::Proxy;

/// Produces a JSON document for a debug endpoint.
pub type DebugSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the admin handler reads.
#[derive(Clone)]
pub struct AdminState {
    /// The proxy (metrics, table).
    pub proxy: Proxy,
    /// True once the sidecar may receive traffic.
    pub ready: watch::Receiver<bool>,
    /// Membership view; defaults to the routing table's endpoints.
    pub members: Option<DebugSource>,
    /// Shard view; defaults to the routing table's owners.
    pub shards: Option<DebugSource>,
    /// Hands the shards off on the app's preStop hook (`/drain`).
    pub drain: Option<DrainControl>,
}

/// Handles one admin request from `peer`.
pub async fn handle(
    state: AdminState,
    req: Request<RequestBody>,
    peer: SocketAddr,
) -> Response<BoxBody> {
    // POST too for /drain: a kubelet's preStop httpGet sends GET, people
    // and scripts expect a state change to be a POST.
    let drain_post = req.method() == Method::POST && req.uri().path() == "/drain";
    if req.method() != Method::GET && req.method() != Method::HEAD && !drain_post {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/drain" => match &state.drain {
            Some(drain) if drain.allowed(peer.ip()) => {
                drain.drain().await;
                text(StatusCode::OK, "drained\n")
            }
            Some(_) => text(
                StatusCode::FORBIDDEN,
                "only the pod itself or its node may drain it\n",
            ),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        "/metrics" => {
            let mut rsp = Response::new(full(Bytes::from(state.proxy.metrics().encode())));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            rsp
        }
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => {
            if *state.ready.borrow() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/debug/members" => {
            let doc = match &state.members {
                Some(f) => f(),
                None => table_members(&state.proxy),
            };
            json_response(doc)
        }
        "/debug/shards" => {
            let doc = match &state.shards {
                Some(f) => f(),
                None => table_shards(&state.proxy),
            };
            json_response(doc)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn table_members(proxy: &Proxy) -> serde_json::Value {
    let table = proxy.table();
    let mut services: Vec<_> = table.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    json!({
        "local": &*table.local,
        "version": table.version,
        "members": services.iter().flat_map(|s| s.endpoints.iter().map(move |e| json!({
            "service": &*s.name,
            "pod": &*e.name,
            "inbound": &*e.inbound,
            "health": format!("{:?}", e.health).to_lowercase(),
        }))).collect::<Vec<_>>(),
    })
}

fn table_shards(proxy: &Proxy) -> serde_json::Value {
    let table = proxy.table();
    let mut services: Vec<_> = table.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    json!({
        "local": &*table.local,
        "services": services.iter().map(|s| json!({
            "service": &*s.name,
            "shards": (0..s.shards).map(|id| {
                let owner = s.owner(id);
                json!({
                    "shard": id,
                    "owner": owner.map(|(e, _)| &*e.name),
                    "epoch": owner.map(|(_, epoch)| epoch),
                    "state": if owner.is_some_and(|(e, _)| e.name == table.local) { "serving" } else if owner.is_some() { "remote" } else { "unowned" },
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn json_response(doc: serde_json::Value) -> Response<BoxBody> {
    let mut rsp = Response::new(full(doc.to_string()));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

fn text(status: StatusCode, body: &'static str) -> Response<BoxBody> {
    let mut rsp = Response::new(full(body));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    rsp
}
