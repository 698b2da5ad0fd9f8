//! The breaker on the request path: reads the [`Peer`] extension, fails
//! fast with [`CircuitOpen`](crate::errors::CircuitOpen) when that peer's
//! breaker refuses, and reports each outcome. A failure is a failure of the
//! pod, not of one request: no answer (an error, a try cut by its deadline)
//! or the peer sidecar's own `unavailable` / `timeout` answer (its app
//! cannot be reached or did not answer in time). The app's own answers,
//! whatever their status, and the mesh's other refusals count for nothing
//! (see [`judge`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::registry::{Breakers, Ticket};
use super::Peer;

use crate::errors::BoxError;

/// Builds [`BreakerService`]s sharing one [`Breakers`] registry.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breakers: Arc<Breakers>,
}

/// Guards calls to the peer named by each request's [`Peer`] extension.
/// Requests without one pass through unguarded.
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breakers: Arc<Breakers>,
}

pin_project! {
    /// Response future of [`BreakerService`].
    pub struct BreakerFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Refused by an open breaker.
        Failed { error: Option<BoxError> },
        // Sent, with the ticket to report the outcome on.
        Running { #[pin] inner: F, ticket: Option<Ticket> },
    }
}

// === impl BreakerLayer ===

impl BreakerLayer {
    /// A layer over `breakers`.
    pub fn new(breakers: Arc<Breakers>) -> Self {
        Self { breakers }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breakers: self.breakers.clone(),
        }
    }
}

// === impl BreakerService ===

impl<S, B, RB> Service<Request<B>> for BreakerService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ticket = match req.extensions().get::<Peer>() {
            None => None,
            Some(Peer(peer)) => {
                let expires = crate::deadline::try_ends(&req);
                match self.breakers.admit(peer, expires) {
                    Ok(ticket) => Some(ticket),
                    Err(open) => {
                        return BreakerFuture {
                            state: State::Failed {
                                error: Some(open.into()),
                            },
                        }
                    }
                }
            }
        };
        BreakerFuture {
            state: State::Running {
                inner: self.inner.call(req),
                ticket,
            },
        }
    }
}

// === impl BreakerFuture ===

impl<F, RB, E> Future for BreakerFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "breaker future polled after completion".into()))),
            StateProj::Running { inner, ticket } => {
                let mut result = std::task::ready!(inner.poll(cx)).map_err(Into::into);
                // gRPC answers are judged by `grpc-status` (see `grpc`).
                let ticket = ticket
                    .take()
                    .and_then(|t| super::grpc::settle(&mut result, t));
                if let Some(t) = ticket {
                    match judge(&result) {
                        Judgement::Success => t.finish(true),
                        Judgement::Failure => t.finish(false),
                        Judgement::Neither => t.ignore(),
                    }
                }
                Poll::Ready(result)
            }
        }
    }
}

/// What an outcome says about the peer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    /// The peer's app answered below 500: the pod is healthy.
    Success,
    /// No answer, or the peer sidecar could not get one from its app.
    Failure,
    /// Says nothing either way: an app's own 5xx, and the mesh's other
    /// refusals such as `no-owner` and `overloaded`. A peer answering `no-owner` is healthy; it just does not
    /// serve that shard now (handoff, minority side). A peer answering
    /// `overloaded` shed the request before doing anything and said when to
    /// come back: counting it as a failure opens the breaker and keeps every
    /// caller away for the whole open period after a short burst (the e2e
    /// overload scenario took 8 s to recover instead of 1 s). Counting it as
    /// a success would be wrong too: it would reset the failure streak of a
    /// peer whose app is timing out, and let a half-open probe close the
    /// breaker of a peer that did not serve it. So it is not recorded at all
    /// (a half-open probe slot is freed for the next request).
    Neither,
}

/// Judges one outcome. The breaker is per pod and keyed requests have no
/// other pod to go to, so only what says the *pod* is failing counts: no
/// answer at all, or the peer sidecar's `unavailable` (its app refused the
/// connection) and `timeout` (its app did not answer in time). An app's own
/// 5xx is the app's answer for that request (a saga step whose downstream
/// is down answers 503 `transfer-pending`; a fenced term answers 503): it
/// is passed back, retried by the retry policy when allowed, and counts for
/// nothing here. Counting it opened the breaker of healthy pods in the
/// chaos scenario of issue #18 and failed every other key they own with
/// `circuit-open`. Envoy's outlier detection makes the same split
/// (`split_external_local_origin_errors`: only local-origin failures).
fn judge<RB>(result: &Result<Response<RB>, BoxError>) -> Judgement {
    let Ok(rsp) = result else {
        return Judgement::Failure;
    };
    if !rsp.status().is_server_error() {
        return Judgement::Success;
    }
    match rsp.headers().get(crate::retry::classify::ERROR_HEADER) {
        Some(v) if v == "unavailable" || v == "timeout" => Judgement::Failure,
        _ => Judgement::Neither,
    }
}

#[cfg(test)]
mod tests;
