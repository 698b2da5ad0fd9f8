//! The breaker on the request path: reads the [`Peer`] extension, fails
//! fast with [`CircuitOpen`](crate::errors::CircuitOpen) when that peer's
//! breaker refuses, and reports each outcome (failure = any error or a 5xx
//! response).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::registry::{Breakers, Ticket};
use super::Peer;
use crate::deadline::{Deadline, TryDeadline};
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
                let expires = [
                    req.extensions().get::<Deadline>().map(|d| d.0),
                    req.extensions().get::<TryDeadline>().map(|d| d.0),
                ]
                .into_iter()
                .flatten()
                .min();
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
                let result = std::task::ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(t) = ticket.take() {
                    t.finish(is_success(&result));
                }
                Poll::Ready(result)
            }
        }
    }
}

/// Whether an outcome speaks for the peer's health: any error or a 5xx is a
/// failure, except a mesh `no-owner` answer. A peer answering `no-owner` is
/// healthy; it just does not serve that shard now (handoff, minority side).
fn is_success<RB>(result: &Result<Response<RB>, BoxError>) -> bool {
    match result {
        Ok(rsp) => {
            !rsp.status().is_server_error()
                || rsp
                    .headers()
                    .get(crate::retry::classify::ERROR_HEADER)
                    .is_some_and(|v| v == "no-owner")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
