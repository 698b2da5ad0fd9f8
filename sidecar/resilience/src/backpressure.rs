//! Inbound backpressure in front of the local app: at most
//! `max_concurrency` requests at the app, at most `queue_size` more waiting
//! (each at most `max_wait`), and everything beyond refused at once with
//! [`Overloaded`]. `poll_ready` is always ready (load-shed style), so the
//! decision is made in `call` and the server never stops accepting; memory
//! is bounded by the queue.
//!
//! Built from tokio's fair semaphore plus a counter for the queue, because
//! tower's `ConcurrencyLimit` waits without bound in `poll_ready` and
//! `LoadShed` in front of it sheds without any queue: neither gives "queue up
//! to N for at most T, refuse the rest immediately".

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt};

use crate::errors::{BoxError, Overloaded};
use crate::observer::SharedObserver;

/// Backpressure settings of the local service, from [`shardmesh_config::BackpressurePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackpressureSettings {
    /// Requests allowed at the app at once.
    pub max_concurrency: usize,
    /// Requests allowed to wait for a slot.
    pub queue_size: usize,
    /// Longest wait for a slot.
    pub max_wait: Duration,
}

/// Builds [`Backpressure`] services sharing one limit: build one layer per
/// app and reuse it for every connection.
#[derive(Clone)]
pub struct BackpressureLayer {
    limiter: Arc<Limiter>,
}

/// Limits concurrent requests to the inner service; see the module docs.
#[derive(Clone)]
pub struct Backpressure<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

struct Limiter {
    service: Arc<str>,
    settings: BackpressureSettings,
    slots: Arc<Semaphore>,
    /// Size of `slots`: `max_concurrency` within what the semaphore allows.
    permits: usize,
    /// Requests waiting for a slot now; never above `queue_size`.
    queued: AtomicUsize,
    observer: SharedObserver,
}

pin_project! {
    /// Response future of [`Backpressure`]. A request that got a slot at
    /// once (the common case) runs inline, without a boxed future: boxing
    /// per request showed up in the sidecar's profile. Only a queued
    /// request, which waits anyway, is boxed.
    pub struct BackpressureFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: FutureState<S, R>,
    }
}

pin_project! {
    #[project = BackpressureProj]
    enum FutureState<S, R>
    where
        S: Service<R>,
    {
        /// Holding a slot, calling the inner service.
        Running {
            #[pin]
            call: Oneshot<S, R>,
            slot: Option<Slot>,
        },
        /// Waiting in the queue (or refused): the whole wait, boxed.
        Queued {
            fut: Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>,
        },
    }
}

// === impl BackpressureSettings ===

impl BackpressureSettings {
    /// The `Retry-After` hint given to shed callers: the queue's max wait,
    /// rounded up to whole seconds (at least one).
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.max_wait.as_millis().div_ceil(1000).max(1) as u64)
    }
}

impl Default for BackpressureSettings {
    fn default() -> Self {
        Self::from(&shardmesh_config::BackpressurePolicy::default())
    }
}

impl From<&shardmesh_config::BackpressurePolicy> for BackpressureSettings {
    fn from(p: &shardmesh_config::BackpressurePolicy) -> Self {
        Self {
            max_concurrency: (p.max_concurrency as usize).clamp(1, Semaphore::MAX_PERMITS),
            queue_size: p.queue_size as usize,
            max_wait: Duration::from_millis(p.max_queue_wait_ms),
        }
    }
}

impl From<shardmesh_config::BackpressurePolicy> for BackpressureSettings {
    fn from(p: shardmesh_config::BackpressurePolicy) -> Self {
        Self::from(&p)
    }
}

// === impl BackpressureLayer ===

impl BackpressureLayer {
    /// A limit for requests to the app of `service`.
    pub fn new(
        service: impl Into<Arc<str>>,
        settings: BackpressureSettings,
        observer: SharedObserver,
    ) -> Self {
        let permits = settings.max_concurrency.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            limiter: Arc::new(Limiter {
                service: service.into(),
                settings,
                slots: Arc::new(Semaphore::new(permits)),
                permits,
                queued: AtomicUsize::new(0),
                observer,
            }),
        }
    }

    /// Requests at the app now.
    pub fn in_flight(&self) -> usize {
        self.limiter
            .permits
            .saturating_sub(self.limiter.slots.available_permits())
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.limiter.queued.load(Ordering::SeqCst)
    }
}

impl<S> Layer<S> for BackpressureLayer {
    type Service = Backpressure<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Backpressure {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

// === impl Backpressure ===

impl<S, B> Service<Request<B>> for Backpressure<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BackpressureFuture<S, Request<B>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Always ready: readiness of the app is handled by the queue below,
        // so a full app sheds instead of stalling the connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Decide now, in `call`, so a shed request costs no wait at all.
        if let Ok(permit) = self.limiter.slots.clone().try_acquire_owned() {
            let slot = Slot::new(&self.limiter, permit);
            return BackpressureFuture {
                state: FutureState::Running {
                    call: self.inner.clone().oneshot(req),
                    slot: Some(slot),
                },
            };
        }
        let limiter = self.limiter.clone();
        let Some(place) = QueuePlace::take(&limiter) else {
            let shed = limiter.shed();
            return BackpressureFuture::queued(Box::pin(std::future::ready(Err(shed))));
        };
        let inner = self.inner.clone();
        BackpressureFuture::queued(Box::pin(async move {
            let waited = tokio::time::timeout(
                limiter.settings.max_wait,
                limiter.slots.clone().acquire_owned(),
            )
            .await;
            drop(place);
            match waited {
                Ok(Ok(permit)) => run(Slot::new(&limiter, permit), inner, req).await,
                // Timed out, or the semaphore closed (never, but not a panic).
                _ => Err(limiter.shed()),
            }
        }))
    }
}

impl<S, R> BackpressureFuture<S, R>
where
    S: Service<R>,
{
    fn queued(fut: Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>) -> Self {
        Self {
            state: FutureState::Queued { fut },
        }
    }
}

impl<S, R> Future for BackpressureFuture<S, R>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            BackpressureProj::Running { call, slot } => {
                let result = std::task::ready!(call.poll(cx)).map_err(Into::into);
                // The slot is given back as soon as the app answered (or
                // failed), as when the request ran in its own future.
                drop(slot.take());
                Poll::Ready(result)
            }
            BackpressureProj::Queued { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// Sends `req` to the app while holding a slot.
async fn run<S, B>(slot: Slot, inner: S, req: Request<B>) -> Result<S::Response, BoxError>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    let result = inner.oneshot(req).await.map_err(Into::into);
    drop(slot);
    result
}

// === impl Limiter ===

impl Limiter {
    fn shed(&self) -> BoxError {
        self.observer.load_shed(&self.service);
        Overloaded {
            retry_after: self.settings.retry_after(),
        }
        .into()
    }
}

/// A place in the queue, given back on drop (also when the caller goes away).
struct QueuePlace(Arc<Limiter>);

impl QueuePlace {
    fn take(limiter: &Arc<Limiter>) -> Option<Self> {
        let max = limiter.settings.queue_size;
        limiter
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < max).then_some(q + 1)
            })
            .ok()
            .map(|_| QueuePlace(limiter.clone()))
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request's slot at the app: reported in flight from when it is taken
/// until it is dropped, when the permit goes to the next waiter.
struct Slot {
    limiter: Arc<Limiter>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(limiter: &Arc<Limiter>, permit: OwnedSemaphorePermit) -> Self {
        limiter.observer.inflight(&limiter.service, 1);
        Self {
            limiter: limiter.clone(),
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.observer.inflight(&self.limiter.service, -1);
    }
}

#[cfg(test)]
mod tests;
