//! Glue between the proxy and `shardmesh-resilience`: the per-route stacks
//! and the metrics observer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};

use shardmesh_config::ResiliencePolicy;
use shardmesh_resilience::BoxError;
use shardmesh_resilience::{
    Backpressure, BackpressureLayer, BackpressureSettings, BreakerLayer, BreakerState, Breakers,
    BulkheadLayer, BulkheadSettings, Bulkheads, DeadlineLayer, DeadlineService, Observer,
    RetryLayer, RetrySettings, SharedObserver,
};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder};

use crate::body::BoxBody;
use crate::inbound::SendToApp;
use crate::metrics::Metrics;
use crate::outbound::{PickEndpoint, SendToPeer};
use crate::proxy::RouteStack;

/// Reports resilience events into the sidecar's prometheus metrics.
pub struct MetricsObserver {
    metrics: Metrics,
}

impl MetricsObserver {
    /// An observer writing into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl Observer for MetricsObserver {
    fn retry(&self, service: &str) {
        self.metrics.retries.with_label_values(&[service]).inc();
    }
    fn retry_budget_exhausted(&self, service: &str) {
        self.metrics
            .retry_budget_exhausted
            .with_label_values(&[service])
            .inc();
    }
    fn breaker_transition(&self, peer: &str, to: BreakerState) {
        self.metrics
            .breaker_state
            .with_label_values(&[peer])
            .set(to.as_gauge());
        self.metrics
            .breaker_transitions
            .with_label_values(&[peer, to.as_str()])
            .inc();
    }
    fn load_shed(&self, service: &str) {
        self.metrics.load_shed.with_label_values(&[service]).inc();
    }
}

/// The outbound stack of one destination service: the bulkhead (shed at
/// once when the service has too many pending requests), the deadline, then
/// retries around the per-try endpoint pick.
pub fn outbound_stack(
    policy: &ResiliencePolicy,
    service: &Arc<str>,
    observer: SharedObserver,
    bulkheads: &Bulkheads,
    inner: PickEndpoint,
) -> RouteStack {
    let bulkhead = bulkheads.get(service, BulkheadSettings::from(&policy.bulkhead));
    let svc = ServiceBuilder::new()
        .layer(BulkheadLayer::new(bulkhead))
        .layer(DeadlineLayer::new(Duration::from_millis(
            policy.timeouts.request_ms,
        )))
        .layer(RetryLayer::new(
            service.clone(),
            RetrySettings::from(policy),
            observer,
        ))
        .service(inner);
    BoxCloneSyncService::new(svc)
}

/// The per-try stack to one peer: its breaker, then the HTTP/2 client.
pub fn peer_stack(breakers: Arc<Breakers>, inner: SendToPeer) -> RouteStack {
    BoxCloneSyncService::new(BreakerLayer::new(breakers).layer(inner))
}

/// The inbound stack's concrete type: not boxed, because it is the one
/// stack of the hop and cloning a boxed stack (plus boxing its future) per
/// request showed in the profile; cloning this is two `Arc` increments.
pub type InboundStack = DeadlineService<Backpressure<SendToApp>>;

/// Drives the inbound stack for one request. The future is returned as an
/// opaque `impl Future + Send` from a plain fn: awaited directly inside an
/// async fn, rustc's `Send` check of the tower call demands the service
/// impl for every lifetime of the `dyn Error` inside `BoxBody` (the same
/// limitation `proxy::call` works around by boxing).
pub fn call_inbound(
    stack: InboundStack,
    req: Request<BoxBody>,
) -> impl Future<Output = Result<Response<BoxBody>, BoxError>> + Send {
    tower::ServiceExt::oneshot(stack, req)
}

/// The inbound stack in front of the local app: the deadline (the caller's
/// remaining budget), then the concurrency limit with its bounded queue.
pub fn inbound_stack(
    policy: &ResiliencePolicy,
    service: &str,
    observer: SharedObserver,
    inner: SendToApp,
) -> InboundStack {
    ServiceBuilder::new()
        // Nothing inside reads the `Deadline` extension (backpressure and
        // the app client do not), so it is not stored: three allocations
        // per request saved; the deadline is still enforced and forwarded.
        .layer(
            DeadlineLayer::new(Duration::from_millis(policy.timeouts.request_ms))
                .without_extension(),
        )
        .layer(BackpressureLayer::new(
            service,
            BackpressureSettings::from(&policy.backpressure),
            observer,
        ))
        .service(inner)
}
