//! Events the layers report. The sidecar implements [`Observer`] with
//! prometheus so this crate stays free of a metrics dependency.

use std::sync::Arc;

/// State of one peer's circuit breaker, as reported to metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests flow; outcomes are counted.
    Closed,
    /// One probe at a time tests whether the peer recovered.
    HalfOpen,
    /// Requests fail fast with `circuit-open`.
    Open,
}

impl BreakerState {
    /// Value of the `shardmesh_circuit_breaker_state` gauge (DESIGN.md):
    /// 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// Label value for `circuit_breaker_transitions_total{to}`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }
}

/// Receives resilience events; every method defaults to doing nothing so an
/// implementation picks only what it records. Called on the request path:
/// implementations must be cheap and must not block.
pub trait Observer: Send + Sync + 'static {
    /// A retry of a request to `service` is about to be sent.
    fn retry(&self, service: &str) {
        let _ = service;
    }
    /// The retry budget of `service` refused a retry.
    fn retry_budget_exhausted(&self, service: &str) {
        let _ = service;
    }
    /// The breaker of `peer` changed state.
    fn breaker_transition(&self, peer: &str, to: BreakerState) {
        let _ = (peer, to);
    }
    /// A request to `service` was shed with `overloaded`.
    fn load_shed(&self, service: &str) {
        let _ = service;
    }
    /// Requests in flight for `service` changed by `delta` (+1 start, -1 end).
    fn inflight(&self, service: &str, delta: i64) {
        let _ = (service, delta);
    }
}

/// An observer that records nothing: the default, and for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// Shared handle to an observer, as the layers hold it.
pub type SharedObserver = Arc<dyn Observer>;

/// A [`SharedObserver`] that records nothing.
pub fn noop() -> SharedObserver {
    Arc::new(NoopObserver)
}
