//! Outbound bulkheads: a cap on requests pending to each destination
//! service, so one slow service cannot use up the sidecar's capacity (its
//! connections, memory, the app's outbound concurrency) for the others.
//! Beyond the cap the caller gets [`Overloaded`] at once.
//!
//! tower's `ConcurrencyLimit` + `LoadShed` would do the counting, but
//! `ConcurrencyLimit` reserves its permit in `poll_ready`, one per service
//! clone, which does not fit a per-request decision made in `call`; an atomic
//! counter with a drop guard is smaller and exact.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::errors::{BoxError, Overloaded};
use crate::observer::SharedObserver;

/// The `Retry-After` hint given to callers refused by a bulkhead.
pub const BULKHEAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bulkhead settings of one destination service, from [`shardmesh_config::BulkheadPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadSettings {
    /// Requests to the service pending at once.
    pub max_pending: usize,
}

/// The bulkheads of every destination service, keyed by service name.
pub struct Bulkheads {
    observer: SharedObserver,
    services: RwLock<HashMap<Arc<str>, Bulkhead>>,
}

/// The pending-request cap of one destination service. Clones share the count.
#[derive(Clone)]
pub struct Bulkhead {
    service: Arc<str>,
    max_pending: Arc<AtomicUsize>,
    pending: Arc<AtomicUsize>,
    observer: SharedObserver,
}

/// Builds [`BulkheadService`]s for one destination service.
#[derive(Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

/// Refuses requests beyond the destination's pending cap.
#[derive(Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

pin_project! {
    /// Response future of [`BulkheadService`].
    pub struct BulkheadFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Refused: the bulkhead was full.
        Refused { error: Option<BoxError> },
        // Pending, holding its place until the response arrives.
        Running { #[pin] inner: F, _guard: Pending },
    }
}

/// One pending request's place in a bulkhead, given back on drop.
struct Pending(Bulkhead);

// === impl BulkheadSettings ===

impl Default for BulkheadSettings {
    fn default() -> Self {
        Self::from(&shardmesh_config::BulkheadPolicy::default())
    }
}

impl From<&shardmesh_config::BulkheadPolicy> for BulkheadSettings {
    fn from(p: &shardmesh_config::BulkheadPolicy) -> Self {
        Self {
            max_pending: p.max_pending as usize,
        }
    }
}

impl From<shardmesh_config::BulkheadPolicy> for BulkheadSettings {
    fn from(p: shardmesh_config::BulkheadPolicy) -> Self {
        Self::from(&p)
    }
}

// === impl Bulkheads ===

impl Bulkheads {
    /// An empty registry.
    pub fn new(observer: SharedObserver) -> Arc<Self> {
        Arc::new(Self {
            observer,
            services: RwLock::new(HashMap::new()),
        })
    }

    /// The bulkhead of `service`, created on first use; `settings` replace
    /// the cap of an existing one (config reload) without losing its count.
    pub fn get(&self, service: &str, settings: BulkheadSettings) -> Bulkhead {
        if let Some(b) = self
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            b.max_pending.store(settings.max_pending, Ordering::SeqCst);
            return b.clone();
        }
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let b = services.entry(service.into()).or_insert_with(|| Bulkhead {
            service: service.into(),
            max_pending: Arc::new(AtomicUsize::new(settings.max_pending)),
            pending: Arc::new(AtomicUsize::new(0)),
            observer: self.observer.clone(),
        });
        b.max_pending.store(settings.max_pending, Ordering::SeqCst);
        b.clone()
    }

    /// Keeps only the services for which `keep` is true.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        services.retain(|s, _| keep(s));
    }
}

// === impl Bulkhead ===

impl Bulkhead {
    /// Requests pending to this service now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The destination service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn enter(&self) -> Option<Pending> {
        let max = self.max_pending.load(Ordering::SeqCst);
        self.pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.observer.inflight(&self.service, 1);
        Some(Pending(self.clone()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
        self.0.observer.inflight(&self.0.service, -1);
    }
}

// === impl BulkheadLayer ===

impl BulkheadLayer {
    /// A layer enforcing `bulkhead`.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

// === impl BulkheadService ===

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BulkheadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.bulkhead.enter() {
            Some(guard) => State::Running {
                inner: self.inner.call(req),
                _guard: guard,
            },
            None => {
                self.bulkhead.observer.load_shed(&self.bulkhead.service);
                let error = Overloaded {
                    retry_after: BULKHEAD_RETRY_AFTER,
                };
                State::Refused {
                    error: Some(error.into()),
                }
            }
        };
        BulkheadFuture { state }
    }
}

// === impl BulkheadFuture ===

impl<F, T, E> Future for BulkheadFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "bulkhead future polled after completion".into()))),
            StateProj::Running { inner, .. } => inner.poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests;
