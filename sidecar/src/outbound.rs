//! The outbound listener's handler: the app names a service and a key; this
//! finds the owner and sends the request there through the service's
//! resilience stack (bulkhead → deadline → retry → pick endpoint → breaker →
//! pooled HTTP/2).

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::body::RequestBody;
use http::{header, HeaderValue, Request, Response};
use rand::SeedableRng;
use shardmesh_resilience::{BoxError, Peer};
use tokio::time::Instant;
use tower::Service;

use crate::body::BoxBody;
use crate::headers;
use crate::proxy::{Direction, Proxy, RouteStack};
use crate::reason::{MeshFailure, Reason};
use crate::routing::{balance, hold, resolve, Endpoint, EndpointHealth};
use crate::spans::{Hop, HopSpan, TryLog};
use opentelemetry::KeyValue;

/// What the outbound handler decided about a request, carried to the
/// endpoint picker through request extensions.
#[derive(Clone, Debug)]
pub struct RouteTarget {
    /// Destination service.
    pub service: Arc<str>,
    /// Shard of the key, for keyed requests.
    pub shard: Option<u32>,
}

/// The address the innermost client sends to (set by [`PickEndpoint`]).
#[derive(Clone, Debug)]
pub struct PeerAddr(pub Arc<str>);

/// Handles one request from the app. A gRPC call (see [`crate::grpc`])
/// takes its deadline from `grpc-timeout` and gets mesh failures as gRPC
/// statuses; its breaker verdict waits for the status in the trailers.
pub async fn handle(proxy: Proxy, mut req: Request<RequestBody>) -> Response<BoxBody> {
    if !crate::grpc::is_grpc(req.headers()) {
        return route(proxy, req).await;
    }
    crate::grpc::deadline_from_grpc_timeout(req.headers_mut());
    let rsp = route(proxy, req).await;
    let rsp = shardmesh_resilience::breaker::grpc::judge_on_trailers(rsp);
    crate::grpc::answer(rsp).await
}

/// Routes one request from the app through the service's stack.
async fn route(proxy: Proxy, req: Request<RequestBody>) -> Response<BoxBody> {
    let start = Instant::now();
    let table = proxy.table();
    let target = match resolve(&req, &table) {
        Ok(target) => target,
        Err(f) => {
            let rsp = f.into_response(proxy.local_header());
            proxy.record(Direction::Outbound, None, &rsp, start);
            return rsp;
        }
    };
    let Some(routes) = table.service(&target.service) else {
        // resolve() only succeeds for known services.
        let f = MeshFailure::new(Reason::UnknownService, "service left the mesh view");
        return f.into_response(proxy.local_header());
    };
    let limit = proxy.max_body();
    if let Err(f) = crate::body::check_length(req.body(), limit) {
        let rsp = f.into_response(proxy.local_header());
        proxy.record(Direction::Outbound, Some(&target.service), &rsp, start);
        return rsp;
    }
    let shard = target.key.as_deref().map(|k| routes.shard_of(k));
    let service: Arc<str> = routes.name.clone();
    let (stack, metrics) = proxy.outbound_stack(routes);
    let mut req = req.map(|b| crate::body::limited(b, limit));
    // An unsampled request keeps no span and no try log: nothing more on
    // its path than the trace context header.
    let span = proxy
        .tracer()
        .map(|t| t.hop(Hop::Outbound, &service, req.headers_mut()))
        .filter(HopSpan::is_recording);
    let log = span.as_ref().map(|_| {
        let log = Arc::new(TryLog::default());
        req.extensions_mut().insert(log.clone());
        log
    });
    req.extensions_mut().insert(RouteTarget {
        service: service.clone(),
        shard,
    });
    let inflight = metrics.inflight();
    let result = crate::proxy::call(stack, req).await;
    drop(inflight);
    let rsp = proxy.finish(&metrics, result, start);
    match (span, log) {
        (Some(span), Some(log)) => end_span(&proxy, span, &log, &service, shard, rsp),
        _ => rsp,
    }
}

/// Ends the outbound span of a request with what its tries learned, when
/// the response ends (see [`HopSpan::end_with`]).
fn end_span(
    proxy: &Proxy,
    span: HopSpan,
    log: &TryLog,
    service: &str,
    shard: Option<u32>,
    rsp: Response<BoxBody>,
) -> Response<BoxBody> {
    let reason = crate::proxy::reason_label(&rsp);
    if span.is_recording() {
        let (tries, peer) = log.read();
        if let Some(shard) = shard {
            span.set(KeyValue::new("shardmesh.shard", i64::from(shard)));
        }
        span.set(KeyValue::new(
            "shardmesh.retries",
            i64::from(tries.saturating_sub(1)),
        ));
        // The app's answer names the pod that served it (the owner, after
        // any forward); a mesh failure names the sidecar that made it
        // (often this one), so the owner is then the pod last tried.
        let served_by = rsp
            .headers()
            .get(headers::SERVED_BY)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let tried = peer.as_deref().map(String::from);
        let owner = if reason.is_empty() {
            served_by.or(tried)
        } else {
            tried.or(served_by)
        };
        if let Some(owner) = owner {
            span.set(KeyValue::new("shardmesh.owner", owner));
        }
        if let (Some(peer), Some(breakers)) = (peer, proxy.breakers(service)) {
            span.set(KeyValue::new(
                "shardmesh.breaker_state",
                breakers.state(&peer).as_str(),
            ));
        }
    }
    span.end_with(rsp, reason)
}

/// The innermost routing step, run once per try: picks the shard owner (or a
/// keyless endpoint) from the latest table, so a retry after a membership
/// change goes to the new owner.
#[derive(Clone)]
pub struct PickEndpoint {
    proxy: Proxy,
    inner: RouteStack,
}

impl PickEndpoint {
    /// Wraps the breaker-guarded client. The inner stack is boxed: a generic
    /// inner service here trips a rustc higher-ranked `Send` inference bug.
    pub fn new(proxy: Proxy, inner: RouteStack) -> Self {
        Self { proxy, inner }
    }
}

impl Service<Request<BoxBody>> for PickEndpoint {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = crate::proxy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Always ready: the layers above shed load, this only sends.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<BoxBody>) -> Self::Future {
        let proxy = self.proxy.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(target) = req.extensions().get::<RouteTarget>().cloned() else {
                return Err(
                    MeshFailure::new(Reason::BadRequest, "request has no route target").into(),
                );
            };
            let endpoint = match target.shard {
                Some(_) => {
                    let until = shardmesh_resilience::try_ends(&req);
                    owner_when_reachable(&proxy, &target, until).await?
                }
                None => select_endpoint(&proxy, &target)?,
            };
            let h = req.headers_mut();
            headers::strip_hop_by_hop(h);
            // One scan for the names a request usually lacks, instead of a
            // hashed remove each (as inbound does).
            headers::remove_present(h, &[header::HOST, headers::SHARD, headers::HOP]);
            h.insert(headers::SERVICE, HeaderValue::from_str(&target.service)?);
            if let Some(s) = target.shard {
                h.insert(headers::SHARD, HeaderValue::from(s));
            }
            if crate::grpc::is_grpc(h) {
                crate::grpc::stamp_grpc_timeout(h);
            }
            if let Some(log) = req.extensions().get::<Arc<TryLog>>() {
                log.tried(&endpoint.name);
            }
            req.extensions_mut().insert(Peer(endpoint.name.clone()));
            req.extensions_mut()
                .insert(PeerAddr(endpoint.inbound.clone()));
            let _load = proxy.loads().start(&endpoint.name);
            crate::proxy::call(inner, req).await
        })
    }
}

/// The owner of a keyed request's shard. While that owner is unreachable
/// and its breaker refuses, the request is held (see [`hold`]) until a new
/// table names another owner, the breaker admits a probe, or `until`; then
/// it goes on to the breaker, which fails it fast if it still refuses.
async fn owner_when_reachable(
    proxy: &Proxy,
    target: &RouteTarget,
    until: Option<Instant>,
) -> Result<Endpoint, MeshFailure> {
    let mut tables = proxy.table_updates();
    let mut slot = None;
    loop {
        tables.borrow_and_update();
        let endpoint = select_endpoint(proxy, target)?;
        let Some(until) = until.filter(|_| held_back(proxy, target, &endpoint)) else {
            return Ok(endpoint);
        };
        if slot.is_none() {
            slot = proxy.unreachable().hold();
            if slot.is_none() {
                return Ok(endpoint);
            }
        }
        let changed = async {
            if tables.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if !hold::wait_a_little(changed, until).await {
            return Ok(endpoint);
        }
    }
}

/// Whether a keyed request should wait rather than go to `owner` now: the
/// owner gave no answer to its last try (a crashed pod refuses connections)
/// and this request is not the periodic probe, or it refuses through its
/// breaker too; or gossip suspects it and its breaker refuses. A reachable
/// owner with an open breaker (slow or failing app) is failed fast, as
/// DESIGN.md says.
fn held_back(proxy: &Proxy, target: &RouteTarget, owner: &Endpoint) -> bool {
    let now = Instant::now();
    // Looked up only when it matters (a reachable, trusted owner is the
    // common case on every keyed try).
    let breaker_refuses = || {
        proxy
            .breakers(&target.service)
            .is_some_and(|b| !b.is_available(&owner.name, now))
    };
    let unreachable = proxy.unreachable();
    if unreachable.contains(&owner.name) {
        return breaker_refuses() || unreachable.should_wait(&owner.name, now);
    }
    owner.health == EndpointHealth::Suspect && breaker_refuses()
}

/// Picks the endpoint for one try from the latest table: the shard owner for
/// keyed requests, power-of-two-choices for keyless ones.
fn select_endpoint(proxy: &Proxy, target: &RouteTarget) -> Result<Endpoint, MeshFailure> {
    let table = proxy.table();
    let routes = table.service(&target.service).ok_or_else(|| {
        MeshFailure::new(
            Reason::UnknownService,
            format!("service {} left the mesh view", target.service),
        )
    })?;
    match target.shard {
        Some(shard) => routes.owner(shard).map(|(e, _)| e.clone()).ok_or_else(|| {
            MeshFailure::new(
                Reason::NoOwner,
                format!("shard {shard} of {} has no live owner", target.service),
            )
        }),
        None => {
            let now = Instant::now();
            let breakers = proxy.breakers(&target.service);
            let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
            let usable = |e: &Endpoint| {
                breakers
                    .as_ref()
                    .is_none_or(|b| b.is_available(&e.name, now))
            };
            balance::pick(&routes.endpoints, proxy.loads(), &usable, &mut rng)
                .cloned()
                .ok_or_else(|| {
                    MeshFailure::new(
                        Reason::NoOwner,
                        format!("no available endpoint of {}", target.service),
                    )
                })
        }
    }
}

/// The innermost service: sends to the peer named by [`PeerAddr`] over the
/// pooled HTTP/2 client.
#[derive(Clone)]
pub struct SendToPeer {
    proxy: Proxy,
}

impl SendToPeer {
    /// A sender using the proxy's peer client.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

impl Service<Request<BoxBody>> for SendToPeer {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = crate::proxy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Always ready: the layers above shed load, this only sends.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        let proxy = self.proxy.clone();
        Box::pin(async move {
            let Some(PeerAddr(addr)) = req.extensions().get::<PeerAddr>().cloned() else {
                return Err(
                    MeshFailure::new(Reason::BadRequest, "request has no peer address").into(),
                );
            };
            let peer = req.extensions().get::<Peer>().map(|p| p.0.clone());
            let result = proxy.peer_client().send(&addr, req).await;
            if let Some(peer) = peer {
                // No answer at all (refused, reset, closed): the peer may be
                // gone. An HTTP answer, even a 5xx, says it is there.
                proxy.unreachable().record(&peer, result.is_ok());
            }
            result
        })
    }
}
