//! The breaker on the request path: reads the [`Peer`] extension, fails
//! fast with [`CircuitOpen`](crate::errors::CircuitOpen) when that peer's
//! breaker refuses, and reports each outcome (failure = any error or a 5xx
//! response, except the mesh's `no-owner` and `overloaded` answers, which
//! are not counted either way).

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
    /// The peer answered: it is healthy.
    Success,
    /// An error or a 5xx: counts against the peer.
    Failure,
    /// Says nothing either way: the mesh's `no-owner` and `overloaded`
    /// answers. A peer answering `no-owner` is healthy; it just does not
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

fn judge<RB>(result: &Result<Response<RB>, BoxError>) -> Judgement {
    match result {
        Ok(rsp) if !rsp.status().is_server_error() => Judgement::Success,
        Ok(rsp)
            if rsp
                .headers()
                .get(crate::retry::classify::ERROR_HEADER)
                .is_some_and(|v| v == "no-owner" || v == "overloaded") =>
        {
            Judgement::Neither
        }
        _ => Judgement::Failure,
    }
}

#[cfg(test)]
mod tests;
