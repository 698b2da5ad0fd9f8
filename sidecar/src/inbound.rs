//! The inbound listener's handler: requests from other sidecars for this
//! pod's service. Checks that this pod owns the key's shard (forwarding once
//! to the owner it knows when not), then calls the local app behind the
//! backpressure limit.

use crate::body::RequestBody;
use http::{header, HeaderValue, Request, Response};
use shardmesh_resilience::BoxError;
use tokio::time::Instant;

use std::sync::Arc;

use crate::app_client::AppClient;
use crate::body::{check_length, limited, BoxBody};
use crate::client::HttpClient;
use crate::gate::{Admission, Arrival, BOUNCE_WAIT};
use crate::headers;
use crate::proxy::Proxy;
use crate::reason::{MeshFailure, Reason};
use crate::routing::target::{service_name, shard_key};
use crate::spans::Hop;
use crate::tls::PeerIdentity;
use opentelemetry::KeyValue;

/// Handles one request from another sidecar.
pub async fn handle(proxy: Proxy, mut req: Request<RequestBody>) -> Response<BoxBody> {
    let start = Instant::now();
    proxy.note_inbound();
    let span = proxy
        .tracer()
        .map(|t| t.hop(Hop::Inbound, &proxy.service_name(), req.headers_mut()))
        .filter(crate::spans::HopSpan::is_recording);
    let shard = span
        .as_ref()
        .and_then(|_| req.headers().get(headers::SHARD).cloned());
    let metrics = proxy.inbound_metrics();
    let inflight = metrics.inflight();
    let result = admit(&proxy, req).await;
    drop(inflight);
    let rsp = proxy.finish(metrics, result, start);
    let Some(span) = span else {
        return rsp;
    };
    if let Some(s) = shard
        .as_ref()
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
    {
        span.set(KeyValue::new("shardmesh.shard", s));
    }
    span.set(KeyValue::new("shardmesh.owner", proxy.local().to_string()));
    let reason = crate::proxy::reason_label(&rsp);
    span.end_with(rsp, reason)
}

async fn admit(proxy: &Proxy, req: Request<RequestBody>) -> Result<Response<BoxBody>, BoxError> {
    let own = proxy.service_name();
    if let Some(tls) = proxy.tls() {
        let caller = req.extensions().get::<PeerIdentity>();
        if !tls.allows(caller) {
            return Err(MeshFailure::new(
                Reason::Forbidden,
                format!(
                    "identity {} may not call service {own:?}",
                    caller.map_or("(none)", |c| &*c.0)
                ),
            )
            .into());
        }
    }
    let service = service_name(req.headers())?;
    if *service != *own {
        return Err(MeshFailure::new(
            Reason::UnknownService,
            format!("this pod serves {own:?}, not {service:?}"),
        )
        .into());
    }
    let table = proxy.table();
    let routes = table.service(&own).ok_or_else(|| {
        MeshFailure::new(
            Reason::UnknownService,
            format!("service {own:?} is not in the mesh view"),
        )
    })?;
    let shard = shard_key(&req, routes)?.map(|k| routes.shard_of(&k));
    let limit = proxy.max_body();
    check_length(req.body(), limit)?;
    let mut req = req.map(|b| limited(b, limit));
    let Some(shard) = shard else {
        // Keyless: any member serves it.
        return serve_locally(proxy, req, None).await;
    };
    let gate = proxy.gate();
    let mut admission = gate.admit(&own, shard, Arrival::Direct).await;
    // The hop header is read only when forwarding: most requests are not.
    let forwarded = matches!(admission, Admission::Forward { .. }) && hops(&req) > 0;
    if forwarded {
        // Forwarding again is not allowed: give our view a moment instead.
        admission = gate.admit(&own, shard, Arrival::Forwarded).await;
    }
    match admission {
        Admission::Serve { epoch, guard } => {
            let rsp = serve_locally(proxy, req, Some((shard, epoch))).await;
            drop(guard);
            rsp
        }
        Admission::Forward { owner, inbound } if !forwarded => {
            // Our caller's view was stale: forward once, marked so the owner
            // never forwards again (hop limit 1).
            tracing::debug!(shard, %owner, "forwarding to the owner");
            let h = req.headers_mut();
            headers::strip_hop_by_hop(h);
            h.remove(header::HOST);
            h.insert(headers::HOP, HeaderValue::from(1u16));
            let rsp = proxy.peer_client().send(&inbound, req).await?;
            if names_owner(&rsp, proxy.local_header()) {
                // It bounced: `owner` names us. If our view is the stale one,
                // wait for it to catch up so the caller's retry of this
                // `no-owner` finds the owner instead of bouncing again.
                gate.bounced(shard, &owner, BOUNCE_WAIT).await;
            }
            Ok(rsp)
        }
        Admission::Forward { owner, .. } => {
            let failure = MeshFailure::new(
                Reason::NoOwner,
                format!("shard {shard} belongs to {owner}, and the request was already forwarded"),
            );
            let mut rsp = failure.into_response(proxy.local_header());
            if let Ok(v) = HeaderValue::from_str(&owner) {
                rsp.headers_mut().insert(headers::OWNER, v);
            }
            Ok(rsp)
        }
        Admission::NoOwner(why) => Err(MeshFailure::new(Reason::NoOwner, why).into()),
    }
}

/// Whether `rsp` is a bounce naming `me`: the pod we forwarded to refused
/// because its view names us as the owner.
fn names_owner<B>(rsp: &Response<B>, me: &HeaderValue) -> bool {
    rsp.headers().get(headers::OWNER) == Some(me)
}

/// Forwarding hops the request has taken (`x-shardmesh-hop`, 0 when absent
/// or unreadable); looked up only when the request would be forwarded.
fn hops<B>(req: &Request<B>) -> u8 {
    req.headers()
        .get(headers::HOP)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(0)
}

async fn serve_locally(
    proxy: &Proxy,
    mut req: Request<BoxBody>,
    shard: Option<(u32, u64)>,
) -> Result<Response<BoxBody>, BoxError> {
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h);
    match shard {
        Some((shard, epoch)) => {
            headers::remove_present(h, &[headers::HOP]);
            h.insert(headers::SHARD, HeaderValue::from(shard));
            h.insert(headers::EPOCH, HeaderValue::from(epoch));
        }
        None => headers::remove_present(h, &[headers::HOP, headers::SHARD, headers::EPOCH]),
    }
    let stack = proxy.inbound_stack();
    let mut rsp = crate::resilience::call_inbound(stack, req).await?;
    if let Some((shard, epoch)) = shard.filter(|_| rsp.headers().contains_key(headers::FENCED)) {
        // The app does not hold the shard at this epoch and applied
        // nothing: end the term and acquire again. The caller's sidecar
        // retries `no-owner` for every method and its breaker ignores it,
        // so a fenced term never counts against this pod.
        proxy.gate().fenced(shard, epoch);
        return Err(MeshFailure::new(
            Reason::NoOwner,
            format!("the app does not hold shard {shard} at epoch {epoch}; acquiring it again"),
        )
        .into());
    }
    rsp.headers_mut()
        .insert(headers::SERVED_BY, proxy.local_header().clone());
    Ok(rsp)
}

/// The innermost inbound service: the local app over pooled HTTP/1.1, or
/// over pooled h2c for gRPC calls (HTTP/2 with trailers and streams).
#[derive(Clone)]
pub struct SendToApp {
    client: AppClient,
    grpc: HttpClient,
    address: Arc<str>,
}

impl SendToApp {
    /// A sender to the app behind `client`, at `address` for gRPC.
    pub fn new(client: AppClient, address: &str) -> Self {
        Self {
            client,
            grpc: HttpClient::h2c(),
            address: Arc::from(address),
        }
    }
}

impl tower::Service<Request<BoxBody>> for SendToApp {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = crate::proxy::ResponseFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // Always ready: backpressure above bounds what reaches the app.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<BoxBody>) -> Self::Future {
        if crate::grpc::is_grpc(req.headers()) {
            crate::grpc::to_app(req.headers_mut());
            let grpc = self.grpc.clone();
            let address = self.address.clone();
            return Box::pin(async move { grpc.send(&address, req).await });
        }
        let client = self.client.clone();
        Box::pin(async move { client.send(req).await })
    }
}
