//! Request deadlines. The deadline layer turns `x-shardmesh-timeout-ms` (or
//! the route default) into a [`Deadline`] extension, forwards the remaining
//! budget to the next hop in the same header, and fails the request with
//! [`DeadlineExceeded`] once the deadline passes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Request;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::errors::{BadTimeoutHeader, BoxError, DeadlineExceeded};

/// The header carrying a request's remaining time budget in milliseconds.
pub const TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-shardmesh-timeout-ms");

/// The largest timeout a caller may ask for (one hour, as for `requestMs`),
/// so deadline arithmetic can never overflow.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// When a request must be finished, stored in the request's extensions so
/// every inner layer (retries, per-try timeouts) sees the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub Instant);

/// When the current try must be finished, set by the retry layer on each
/// try whose per-try timeout ends before the [`Deadline`], so inner layers
/// such as the breaker can tell a timed-out try from a cancelled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TryDeadline(pub Instant);

/// The earlier of the request's [`Deadline`] and the current try's
/// [`TryDeadline`]: how long an inner layer may wait on this try's behalf.
pub fn try_ends<B>(req: &http::Request<B>) -> Option<Instant> {
    let ext = req.extensions();
    let request = ext.get::<Deadline>().map(|d| d.0);
    let try_ = ext.get::<TryDeadline>().map(|d| d.0);
    match (request, try_) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Deadline settings of a route, from [`shardmesh_config::TimeoutPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutSettings {
    /// Deadline of a request that carries no `x-shardmesh-timeout-ms`.
    pub request: Duration,
    /// Timeout of one try; `None` means the remaining deadline.
    pub per_try: Option<Duration>,
}

/// Builds [`DeadlineService`]s for one route.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
    attach: bool,
}

/// Sets, forwards and enforces the deadline of each request.
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    default: Duration,
    /// `default` as the header's text, made once: most requests carry no
    /// timeout of their own, and formatting one costs an allocation.
    default_header: HeaderValue,
    /// Whether the [`Deadline`] goes into the request's extensions.
    attach: bool,
}

pin_project! {
    /// Response future of [`DeadlineService`].
    pub struct DeadlineFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The request was refused before reaching the inner service.
        Failed { error: Option<BoxError> },
        // The inner call, raced against the deadline.
        Running { #[pin] inner: tokio::time::Timeout<F> },
    }
}

/// Reads `x-shardmesh-timeout-ms`: `Ok(None)` when absent, an error when the
/// value is not an integer between 1 and [`MAX_TIMEOUT_MS`].
pub fn parse_timeout_header(headers: &HeaderMap) -> Result<Option<Duration>, BadTimeoutHeader> {
    let Some(value) = headers.get(&TIMEOUT_HEADER) else {
        return Ok(None);
    };
    let bad = || BadTimeoutHeader {
        value: String::from_utf8_lossy(value.as_bytes())
            .chars()
            .take(64)
            .collect(),
        max: MAX_TIMEOUT_MS,
    };
    let ms: u64 = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(bad)?;
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(bad());
    }
    Ok(Some(Duration::from_millis(ms)))
}

/// Writes the time left until `deadline` into `headers` for the next hop,
/// rounded up to whole milliseconds; fails when no time is left.
pub fn stamp_remaining(
    headers: &mut HeaderMap,
    deadline: Deadline,
) -> Result<(), DeadlineExceeded> {
    stamp_remaining_at(headers, deadline, Instant::now())
}

/// [`stamp_remaining`] as seen at `now`: for a caller that has just read
/// the clock (one clock read per request instead of two).
fn stamp_remaining_at(
    headers: &mut HeaderMap,
    deadline: Deadline,
    now: Instant,
) -> Result<(), DeadlineExceeded> {
    let left = deadline.0.saturating_duration_since(now);
    if left.is_zero() {
        return Err(DeadlineExceeded);
    }
    headers.insert(TIMEOUT_HEADER, HeaderValue::from(ceil_ms(left)));
    Ok(())
}

/// Whole milliseconds, rounded up, at least 1.
fn ceil_ms(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `now + d`, saturating far in the future instead of panicking when a
/// hand-built setting is absurdly large.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

// === impl Deadline ===

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(later(Instant::now(), timeout))
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_past(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The deadline a request carries, if a deadline layer ran.
    pub fn of<B>(req: &Request<B>) -> Option<Deadline> {
        req.extensions().get::<Deadline>().copied()
    }
}

// === impl TimeoutSettings ===

impl Default for TimeoutSettings {
    fn default() -> Self {
        Self::from(&shardmesh_config::TimeoutPolicy::default())
    }
}

impl From<&shardmesh_config::TimeoutPolicy> for TimeoutSettings {
    fn from(p: &shardmesh_config::TimeoutPolicy) -> Self {
        let clamp = |ms: u64| Duration::from_millis(ms.clamp(1, MAX_TIMEOUT_MS));
        Self {
            request: clamp(p.request_ms),
            per_try: p.per_try_ms.map(clamp),
        }
    }
}

impl From<shardmesh_config::TimeoutPolicy> for TimeoutSettings {
    fn from(p: shardmesh_config::TimeoutPolicy) -> Self {
        Self::from(&p)
    }
}

// === impl DeadlineLayer ===

impl DeadlineLayer {
    /// A layer whose requests without a timeout header get `default`.
    pub fn new(default: Duration) -> Self {
        Self {
            default,
            attach: true,
        }
    }

    /// A layer that still enforces and forwards the deadline but does not
    /// store it in the request's extensions, for a stack whose inner layers
    /// never read it (the sidecar's inbound stack in front of the app): the
    /// extension map costs three allocations per request.
    pub fn without_extension(self) -> Self {
        Self {
            attach: false,
            ..self
        }
    }
}

impl From<&TimeoutSettings> for DeadlineLayer {
    fn from(s: &TimeoutSettings) -> Self {
        Self::new(s.request)
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            default: self.default,
            default_header: HeaderValue::from(ceil_ms(self.default)),
            attach: self.attach,
        }
    }
}

// === impl DeadlineService ===

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let asked = match parse_timeout_header(req.headers()) {
            Ok(t) => t,
            Err(e) => return DeadlineFuture::failed(e.into()),
        };
        let now = Instant::now();
        let mut deadline = Deadline(later(now, asked.unwrap_or(self.default)));
        // An outer layer may already have set a tighter deadline: keep it.
        match Deadline::of(&req).filter(|outer| *outer < deadline) {
            Some(outer) => {
                deadline = outer;
                if let Err(e) = stamp_remaining_at(req.headers_mut(), deadline, now) {
                    return DeadlineFuture::failed(e.into());
                }
            }
            // The time left is exactly what the request asked for (its
            // header already says so: whole milliseconds, at least 1) or the
            // default.
            None if asked.is_some() => {}
            None => {
                req.headers_mut()
                    .insert(TIMEOUT_HEADER, self.default_header.clone());
            }
        }
        if self.attach {
            req.extensions_mut().insert(deadline);
        }
        DeadlineFuture {
            state: State::Running {
                inner: tokio::time::timeout_at(deadline.0, self.inner.call(req)),
            },
        }
    }
}

// === impl DeadlineFuture ===

impl<F> DeadlineFuture<F> {
    fn failed(error: BoxError) -> Self {
        DeadlineFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "deadline future polled after completion".into()))),
            StateProj::Running { inner } => match inner.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(result)) => Poll::Ready(result.map_err(Into::into)),
                Poll::Ready(Err(_elapsed)) => Poll::Ready(Err(DeadlineExceeded.into())),
            },
        }
    }
}

#[cfg(test)]
mod tests;
