//! Retries with exponential backoff and full jitter, per-try timeouts, and
//! a retry budget (tower's [`TpsBudget`]).
//!
//! The loop is our own rather than `tower::retry::Retry`: each try needs the
//! body replayed from an async buffer, a per-try timeout bounded by the
//! request deadline, the remaining budget stamped into the header, and a
//! typed [`RetryBudgetExhausted`] error; tower's `Policy` hooks are
//! synchronous around `clone_request` and cannot express the first two
//! without a second wrapper. The budget itself is tower's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service};

use crate::backoff::{full_jitter, Jitter};
use crate::body::{self, BoxBody, Decided, NotRetryable, Prepared, ReplayableRequest};
use crate::deadline::{later, stamp_remaining, Deadline, TryDeadline};
use crate::errors::{BoxError, DeadlineExceeded, RetryBudgetExhausted, TryTimeout};
use crate::observer::SharedObserver;

pub mod classify;

use classify::{classify, is_failure, is_idempotent, Verdict};

/// Retry settings of one route, from [`shardmesh_config::RetryPolicy`].
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Total tries including the first (1 disables retries).
    pub attempts: u32,
    /// Backoff ceiling of the first retry.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Retries allowed per request deposited in the budget (0.2 = 20 %).
    pub budget_ratio: f32,
    /// Retries always allowed per second on top of the ratio.
    pub budget_min_per_second: u32,
    /// How long a request counts toward the budget.
    pub budget_window: Duration,
    /// Bodies up to this size are buffered for replay.
    pub max_replay_body_bytes: usize,
    /// Timeout of one try; `None` means the remaining deadline.
    pub per_try: Option<Duration>,
}

/// Builds [`Retry`] services for one destination service. Clones share one
/// budget, so build one layer per service and reuse it.
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

/// Retries failed tries of a request when that is safe.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What every request of a layer shares.
#[derive(Clone)]
struct Shared {
    service: Arc<str>,
    settings: RetrySettings,
    budget: Arc<TpsBudget>,
    observer: SharedObserver,
    jitter: Jitter,
}

/// A boxed, sendable future.
type SendFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Response future of [`Retry`].
pub type RetryFuture<RB> = SendFuture<'static, Result<Response<RB>, BoxError>>;

// === impl RetrySettings ===

impl RetrySettings {
    /// A budget with these settings. Values outside what [`TpsBudget`]
    /// accepts (it panics on them) are clamped: window 1–60 s, ratio 0–1000.
    pub fn budget(&self) -> Arc<TpsBudget> {
        let window = self
            .budget_window
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if self.budget_ratio.is_finite() {
            self.budget_ratio.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let min = self.budget_min_per_second.min(i32::MAX as u32 - 1);
        Arc::new(TpsBudget::new(window, min, ratio))
    }

    /// These settings with the per-try timeout of a [`shardmesh_config::TimeoutPolicy`].
    pub fn with_timeouts(mut self, t: &shardmesh_config::TimeoutPolicy) -> Self {
        self.per_try = crate::deadline::TimeoutSettings::from(t).per_try;
        self
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self::from(&shardmesh_config::RetryPolicy::default())
    }
}

impl From<&shardmesh_config::RetryPolicy> for RetrySettings {
    fn from(p: &shardmesh_config::RetryPolicy) -> Self {
        Self {
            attempts: p.attempts.max(1),
            backoff_base: Duration::from_millis(p.backoff_base_ms),
            backoff_max: Duration::from_millis(p.backoff_max_ms),
            budget_ratio: p.budget_percent as f32 / 100.0,
            budget_min_per_second: p.budget_min_per_second,
            budget_window: Duration::from_secs(p.budget_window_seconds.into()),
            max_replay_body_bytes: usize::try_from(p.max_replay_body_bytes).unwrap_or(usize::MAX),
            per_try: None,
        }
    }
}

impl From<shardmesh_config::RetryPolicy> for RetrySettings {
    fn from(p: shardmesh_config::RetryPolicy) -> Self {
        Self::from(&p)
    }
}

impl From<&shardmesh_config::ResiliencePolicy> for RetrySettings {
    fn from(p: &shardmesh_config::ResiliencePolicy) -> Self {
        Self::from(&p.retries).with_timeouts(&p.timeouts)
    }
}

// === impl RetryLayer ===

impl RetryLayer {
    /// A layer for requests to `service`, with a fresh budget.
    pub fn new(
        service: impl Into<Arc<str>>,
        settings: RetrySettings,
        observer: SharedObserver,
    ) -> Self {
        let budget = settings.budget();
        Self {
            shared: Arc::new(Shared {
                service: service.into(),
                settings,
                budget,
                observer,
                jitter: Jitter::Random,
            }),
        }
    }

    /// Uses `budget` instead of the layer's own (e.g. one budget for several routes).
    pub fn with_budget(self, budget: Arc<TpsBudget>) -> Self {
        self.map_shared(|s| s.budget = budget)
    }

    /// Uses `jitter` for backoff delays (tests pass a seeded or fixed one).
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        self.map_shared(|s| s.jitter = jitter)
    }

    fn map_shared(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// The budget this layer's retries draw from.
    pub fn budget(&self) -> &Arc<TpsBudget> {
        &self.shared.budget
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

// === impl Retry ===

impl<S, RB> Service<Request<BoxBody>> for Retry<S>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = RetryFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        // The clone that was driven to ready serves the first try.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(self.shared.clone(), inner, req))
    }
}

/// Sends `req` up to `attempts` times.
async fn run<S, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<BoxBody>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Clone + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let s = &shared.settings;
    let deadline = Deadline::of(&req);
    shared.budget.deposit();
    let mut source = if s.attempts <= 1 || req.extensions().get::<NotRetryable>().is_some() {
        Source::Once(Some(req))
    } else if crate::breaker::grpc::is_grpc(req.headers()) {
        // A gRPC call may stream: record while sending instead of reading first.
        let (parts, body) = req.into_parts();
        Source::Tee(parts, body::Tee::new(body, s.max_replay_body_bytes))
    } else {
        // Bodiless requests (most) are decided without an await; the reading
        // path is boxed so its large future does not inflate every request's.
        let prepared = match body::prepare_now(req, s.max_replay_body_bytes) {
            Decided::Now(prepared) => prepared,
            Decided::NeedsRead(req) => {
                Box::pin(body::prepare(req, s.max_replay_body_bytes)).await?
            }
        };
        match prepared {
            Prepared::Replayable(r) => Source::Replay(r),
            Prepared::Streaming(req) => Source::Once(Some(req)),
        }
    };

    let idempotent = match &source {
        Source::Replay(r) => is_idempotent(&r.parts().method, &r.parts().headers),
        Source::Tee(parts, _) => is_idempotent(&parts.method, &parts.headers),
        Source::Once(_) => false,
    };
    let mut tries = 0;
    loop {
        // One await site for every kind of try keeps this future small.
        let mut req = match &mut source {
            Source::Once(req) => match req.take() {
                Some(req) => req,
                None => return Err("retry loop ran a one-shot request twice".into()),
            },
            Source::Replay(r) => r.request(),
            Source::Tee(parts, tee) => Request::from_parts(parts.clone(), tee.body()),
        };
        if let Some(d) = deadline {
            stamp_remaining(req.headers_mut(), d)?;
        }
        let outcome = try_once(&mut inner, req, s.per_try, deadline).await;
        tries += 1;
        let retryable = match classify(&outcome) {
            _ if matches!(source, Source::Once(_)) => false,
            _ if matches!(&source, Source::Tee(_, tee) if !tee.replayable()) => false,
            Verdict::Final => false,
            Verdict::RetryAlways => true,
            Verdict::RetryIfIdempotent => idempotent,
        };
        if !retryable || tries >= s.attempts {
            return outcome;
        }
        let delay = full_jitter(tries - 1, s.backoff_base, s.backoff_max, &shared.jitter);
        if deadline.is_some_and(|d| later(Instant::now(), delay) >= d.0) {
            // No time for another try: the caller gets the real outcome.
            return outcome;
        }
        if !shared.budget.withdraw() {
            shared.observer.retry_budget_exhausted(&shared.service);
            // A peer's `overloaded` or `no-owner` answer goes back as it is:
            // nothing ran, and it says why (and, shed, when to come back).
            return if is_failure(&outcome) && !is_peer_refusal(&outcome) {
                Err(RetryBudgetExhausted.into())
            } else {
                outcome
            };
        }
        shared.observer.retry(&shared.service);
        drop(outcome);
        tokio::time::sleep(delay).await;
    }
}

/// Where each try's request comes from.
enum Source {
    /// A request that may be sent once only (streamed body, retries off).
    Once(Option<Request<BoxBody>>),
    /// A buffered request, copied for every try.
    Replay(ReplayableRequest),
    /// A gRPC call: its head, and its body recorded while it streams.
    Tee(http::request::Parts, body::Tee),
}

/// One try, bounded by the per-try timeout and the deadline, whichever is
/// sooner. The try itself is boxed by [`send`] so the request is not copied
/// into every level of nested futures (they hold their arguments apart).
async fn try_once<S, RB>(
    inner: &mut S,
    mut req: Request<BoxBody>,
    per_try: Option<Duration>,
    deadline: Option<Deadline>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let try_end = per_try.map(|t| later(Instant::now(), t));
    let (end, by_deadline) = match (try_end, deadline) {
        (Some(t), Some(d)) if d.0 <= t => (d.0, true),
        (Some(t), _) => (t, false),
        (None, Some(d)) => (d.0, true),
        (None, None) => return send(inner, req).await,
    };
    if !by_deadline {
        // Inner layers read the `Deadline` already; name the sooner end.
        req.extensions_mut().insert(TryDeadline(end));
    }
    match tokio::time::timeout_at(end, send(inner, req)).await {
        Ok(result) => result,
        Err(_) if by_deadline => Err(DeadlineExceeded.into()),
        Err(_) => Err(TryTimeout {
            after: per_try.unwrap_or_default(),
        }
        .into()),
    }
}

/// Waits for `inner` to be ready and sends `req`, as one boxed future.
fn send<'a, S, RB>(
    inner: &'a mut S,
    req: Request<BoxBody>,
) -> SendFuture<'a, Result<Response<RB>, BoxError>>
where
    S: Service<Request<BoxBody>, Response = Response<RB>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send + 'a,
{
    Box::pin(async move {
        std::future::poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        // Boxing the inner future proves `Send` on its concrete type; holding
        // it unboxed across the await trips rustc's higher-ranked `Send` check
        // (rust-lang/rust#110338) because of the trait object in `BoxBody`.
        let fut: SendFuture<'_, Result<Response<RB>, S::Error>> = Box::pin(inner.call(req));
        fut.await.map_err(Into::into)
    })
}

#[cfg(test)]
mod tests;

/// Whether the outcome is another sidecar's refusal made before anything ran
/// (`overloaded`, `no-owner`).
fn is_peer_refusal<RB>(outcome: &Result<Response<RB>, BoxError>) -> bool {
    outcome.is_ok() && classify(outcome) == Verdict::RetryAlways
}
