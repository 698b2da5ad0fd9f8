//! The state every handler shares: the routing table channel, clients,
//! breakers, metrics, and the per-route resilience stacks (built once per
//! service policy and cached).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use shardmesh_config::{ResiliencePolicy, SidecarConfig};
use shardmesh_resilience::{BoxError, BreakerSettings, Breakers, Bulkheads, SharedObserver};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;

use crate::app_client::AppClient;
use crate::body::BoxBody;
use crate::client::HttpClient;
use crate::gate::ShardGate;
use crate::headers;
use crate::inbound::SendToApp;
use crate::metrics::{Metrics, RouteMetrics};
use crate::outbound::{PickEndpoint, SendToPeer};
use crate::resilience::InboundStack;
use crate::routing::balance::LoadTracker;
use crate::routing::hold::Unreachable;
use crate::routing::{RoutingTable, ServiceRoutes, TableRx};
use crate::tls::MeshTls;

/// A composed, cloneable stack for one route.
pub type RouteStack = BoxCloneSyncService<Request<BoxBody>, Response<BoxBody>, BoxError>;

/// An outbound stack with the policy it was built from and its breakers.
#[derive(Clone)]
struct CachedStack {
    policy: Arc<ResiliencePolicy>,
    stack: RouteStack,
    breakers: Arc<Breakers>,
    metrics: RouteMetrics,
}

/// Which listener a request came through (the `direction` metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the local app to another service.
    Outbound,
    /// From another sidecar to the local app.
    Inbound,
}

impl Direction {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Cheap-to-clone handle to the shared proxy state.
#[derive(Clone)]
pub struct Proxy(Arc<Inner>);

struct Inner {
    local: Arc<str>,
    local_header: HeaderValue,
    service: Arc<str>,
    table: TableRx,
    peers: HttpClient,
    app: AppClient,
    loads: LoadTracker,
    metrics: Metrics,
    observer: SharedObserver,
    gate: Arc<dyn ShardGate>,
    tls: Option<Arc<MeshTls>>,
    outbound: Mutex<HashMap<Arc<str>, CachedStack>>,
    bulkheads: Arc<Bulkheads>,
    inbound: InboundStack,
    inbound_metrics: RouteMetrics,
    /// When the proxy was built: the base of `last_inbound`.
    born: Instant,
    /// Milliseconds after `born` when the last inbound request arrived.
    last_inbound: AtomicU64,
    unreachable: Unreachable,
    /// The gossip generation of every pod in the last table synced by
    /// [`Proxy::sync_peers`].
    generations: Mutex<HashMap<Arc<str>, u64>>,
    /// `limits.maxRequestBodyBytes`.
    max_body: u64,
    /// Span per hop and trace export, when `tracing` is configured.
    tracer: Option<crate::spans::Tracer>,
}

impl Proxy {
    /// Builds the proxy state for `config`; with `tls`, peers are called
    /// over mutual TLS.
    pub fn new(
        config: &SidecarConfig,
        table: TableRx,
        gate: Arc<dyn ShardGate>,
        metrics: Metrics,
        tls: Option<Arc<MeshTls>>,
    ) -> Result<Self, BoxError> {
        let local: Arc<str> = Arc::from(config.pod.name.as_str());
        let local_header = HeaderValue::from_str(&config.pod.name)?;
        let observer: SharedObserver =
            Arc::new(crate::resilience::MetricsObserver::new(metrics.clone()));
        let own_policy = config
            .service(&config.pod.service)
            .map(|s| s.resilience.clone())
            .unwrap_or_default();
        metrics.init_service(&config.pod.service);
        let app = AppClient::new(&config.app.address)?;
        let inbound = crate::resilience::inbound_stack(
            &own_policy,
            &config.pod.service,
            observer.clone(),
            SendToApp::new(app.clone(), &config.app.address),
        );
        let inbound_metrics = metrics.route(Direction::Inbound.as_str(), &config.pod.service);
        let tracer = match &config.tracing {
            Some(t) => Some(crate::spans::Tracer::start(
                t,
                &config.pod.service,
                &config.pod.name,
                metrics.trace_spans_dropped.clone(),
                metrics.trace_spans_exported.clone(),
            )?),
            None => None,
        };
        Ok(Self(Arc::new(Inner {
            tracer,
            max_body: config.limits.max_request_body_bytes,
            local,
            local_header,
            service: Arc::from(config.pod.service.as_str()),
            table,
            peers: match &tls {
                Some(t) => HttpClient::h2_tls(&t.client_config()),
                None => HttpClient::h2c(),
            },
            app,
            loads: LoadTracker::default(),
            metrics,
            observer: observer.clone(),
            gate,
            tls,
            outbound: Mutex::new(HashMap::new()),
            bulkheads: Bulkheads::new(observer.clone()),
            inbound,
            inbound_metrics,
            born: Instant::now(),
            last_inbound: AtomicU64::new(0),
            unreachable: Unreachable::default(),
            generations: Mutex::new(HashMap::new()),
        })))
    }

    /// The tracer, when tracing is configured.
    pub fn tracer(&self) -> Option<&crate::spans::Tracer> {
        self.0.tracer.as_ref()
    }

    /// This pod's name.
    pub fn local(&self) -> &Arc<str> {
        &self.0.local
    }

    /// Largest request body accepted (outbound and inbound).
    pub fn max_body(&self) -> u64 {
        self.0.max_body
    }

    /// This pod's name as a header value (`x-shardmesh-served-by`).
    pub fn local_header(&self) -> &HeaderValue {
        &self.0.local_header
    }

    /// The service this pod belongs to.
    pub fn service_name(&self) -> Arc<str> {
        self.0.service.clone()
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.0.table.borrow().clone()
    }

    /// A receiver of routing-table updates (to wait for the next one).
    pub fn table_updates(&self) -> TableRx {
        self.0.table.clone()
    }

    /// Peers that could not be connected to, and the keyed requests held
    /// for them until their shards move.
    pub fn unreachable(&self) -> &Unreachable {
        &self.0.unreachable
    }

    /// Pooled HTTP/2 client to other sidecars.
    pub fn peer_client(&self) -> &HttpClient {
        &self.0.peers
    }

    /// Pooled HTTP/1.1 client to the local app.
    pub fn app_client(&self) -> &AppClient {
        &self.0.app
    }

    /// In-flight counters for keyless balancing.
    pub fn loads(&self) -> &LoadTracker {
        &self.0.loads
    }

    /// Forgets what was learned about pods that restarted or rejoined (a new
    /// gossip generation) or left the table: their breakers and their
    /// unreachable mark. A StatefulSet pod keeps its name across restarts,
    /// and a breaker opened against the old process used to keep failing
    /// the new one's keys fast (`circuit-open`) for up to a minute.
    pub fn sync_peers(&self, table: &RoutingTable) {
        let current: HashMap<Arc<str>, u64> = table
            .services
            .values()
            .flat_map(|r| r.endpoints.iter())
            .map(|e| (e.name.clone(), e.generation))
            .collect();
        let stale: Vec<Arc<str>> = {
            let mut known = self.0.generations.lock().unwrap_or_else(|p| p.into_inner());
            let stale = known
                .iter()
                .filter(|(pod, generation)| current.get(*pod) != Some(*generation))
                .map(|(pod, _)| pod.clone())
                .collect();
            *known = current;
            stale
        };
        if stale.is_empty() {
            return;
        }
        let breakers: Vec<Arc<Breakers>> = {
            let stacks = self.0.outbound.lock().unwrap_or_else(|p| p.into_inner());
            stacks.values().map(|c| c.breakers.clone()).collect()
        };
        for pod in &stale {
            tracing::debug!(%pod, "peer restarted, rejoined or left: forgetting its breaker");
            for b in &breakers {
                b.forget(pod);
            }
            self.0.unreachable.forget(pod);
        }
    }

    /// Circuit breakers of the peers of `service` (once traffic went there).
    pub fn breakers(&self, service: &str) -> Option<Arc<Breakers>> {
        let stacks = self.0.outbound.lock().unwrap_or_else(|p| p.into_inner());
        stacks.get(service).map(|c| c.breakers.clone())
    }

    /// Mutual TLS state, when the mesh has a trust anchor.
    pub fn tls(&self) -> Option<&Arc<MeshTls>> {
        self.0.tls.as_ref()
    }

    /// The shard gate of this pod.
    pub fn gate(&self) -> &dyn ShardGate {
        &*self.0.gate
    }

    /// Metrics of this sidecar.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The inbound stack in front of the app.
    pub fn inbound_stack(&self) -> InboundStack {
        self.0.inbound.clone()
    }

    /// Metric handles of inbound requests for this pod's service.
    pub fn inbound_metrics(&self) -> &RouteMetrics {
        &self.0.inbound_metrics
    }

    /// The outbound stack of `routes`' service, rebuilt when its policy
    /// changes, with the service's outbound metric handles.
    pub fn outbound_stack(&self, routes: &ServiceRoutes) -> (RouteStack, RouteMetrics) {
        let mut stacks = self.0.outbound.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = stacks.get(&routes.name) {
            if Arc::ptr_eq(&cached.policy, &routes.policy) || *cached.policy == *routes.policy {
                return (cached.stack.clone(), cached.metrics.clone());
            }
        }
        let metrics = self
            .0
            .metrics
            .route(Direction::Outbound.as_str(), &routes.name);
        self.0.metrics.init_service(&routes.name);
        let breakers = Breakers::new(
            BreakerSettings::from(&routes.policy.breaker),
            self.0.observer.clone(),
        );
        let stack = crate::resilience::outbound_stack(
            &routes.policy,
            &routes.name,
            self.0.observer.clone(),
            &self.0.bulkheads,
            PickEndpoint::new(
                self.clone(),
                crate::resilience::peer_stack(breakers.clone(), SendToPeer::new(self.clone())),
            ),
        );
        stacks.insert(
            routes.name.clone(),
            CachedStack {
                policy: routes.policy.clone(),
                stack: stack.clone(),
                breakers,
                metrics: metrics.clone(),
            },
        );
        (stack, metrics)
    }

    /// Notes that a request arrived on the inbound listener: a leaving
    /// sidecar keeps serving until callers stopped sending here.
    pub fn note_inbound(&self) {
        let ms = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_inbound.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the last inbound request arrived (since start if none).
    pub fn inbound_idle(&self) -> Duration {
        let last = Duration::from_millis(self.0.last_inbound.load(Ordering::Relaxed));
        self.0.born.elapsed().saturating_sub(last)
    }

    /// Answers a route's result, turning a mesh error into its contract
    /// response through the one rescue point, and records it in the route's
    /// metrics: the common end of the inbound and outbound handlers.
    pub fn finish(
        &self,
        metrics: &RouteMetrics,
        result: Result<Response<BoxBody>, BoxError>,
        start: Instant,
    ) -> Response<BoxBody> {
        let rsp =
            result.unwrap_or_else(|e| crate::rescue::rescue(&e).into_response(self.local_header()));
        metrics.record(
            rsp.status().as_u16(),
            reason_label(&rsp),
            start.elapsed().as_secs_f64(),
        );
        rsp
    }

    /// Records a finished request in the metrics.
    pub fn record(
        &self,
        direction: Direction,
        service: Option<&str>,
        rsp: &Response<BoxBody>,
        start: Instant,
    ) {
        let reason = reason_label(rsp);
        self.0.metrics.record(
            direction.as_str(),
            service.unwrap_or("unknown"),
            rsp.status().as_u16(),
            reason,
            start.elapsed().as_secs_f64(),
        );
    }
}

/// The `reason` label of a response. Only contract reasons become label
/// values: the label stays bounded whatever an app writes into the header.
pub fn reason_label(rsp: &Response<BoxBody>) -> &'static str {
    // Mesh failures are all 4xx or 5xx: a success needs no header look-up.
    if rsp.status().as_u16() < 400 {
        return "";
    }
    rsp.headers()
        .get(headers::ERROR)
        .and_then(crate::reason::Reason::from_header)
        .map_or("", crate::reason::Reason::as_str)
}

/// The future of a stack call, boxed.
pub type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<BoxBody>, BoxError>> + Send>,
>;

/// A boxed future of a response that cannot fail.
pub type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Response<BoxBody>> + Send>>;

/// Drives `stack` for one request. Boxing the future here (outside any
/// async fn) sidesteps a rustc limitation: awaiting `Oneshot<BoxCloneSyncService<..>>`
/// inside an async fn makes its `Send` check demand the service impl for
/// every lifetime of the `dyn Error` inside `BoxBody`.
pub fn call(stack: RouteStack, req: Request<BoxBody>) -> ResponseFuture {
    Box::pin(tower::ServiceExt::oneshot(stack, req))
}
