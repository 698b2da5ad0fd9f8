//! gRPC answers and the breaker (docs/grpc.md). A gRPC call's outcome is
//! its `grpc-status`, not its HTTP status (always 200): statuses of the
//! server-error class (`UNKNOWN`, `DEADLINE_EXCEEDED`, `INTERNAL`,
//! `UNAVAILABLE`, `DATA_LOSS`) count as failures, application statuses
//! (`NOT_FOUND`, `INVALID_ARGUMENT`, …) and `OK` as successes. A
//! trailers-only answer carries its status in the head and is judged at
//! once; otherwise the status comes in the trailers, so the ticket rides in
//! the response's extensions as a [`PendingVerdict`] until
//! [`judge_on_trailers`]'s body sees them.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{header, HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};

use super::registry::Ticket;
use crate::body::BoxBody;
use crate::errors::BoxError;

/// `grpc-status` values counted against the peer: the server-error class.
const FAILURES: [&[u8]; 5] = [b"2", b"4", b"13", b"14", b"15"];

/// A breaker ticket waiting for the call's trailers.
#[derive(Clone, Debug)]
pub struct PendingVerdict(Arc<Mutex<Option<Ticket>>>);

/// Whether `headers` are a gRPC request's or response's.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether a `grpc-status` value counts as success.
fn success(status: Option<&http::HeaderValue>) -> bool {
    status.is_some_and(|s| !FAILURES.contains(&s.as_bytes()))
}

/// Whether `rsp` is a trailers-only gRPC answer with `UNAVAILABLE`: the
/// server refused before sending any message, so a retry is safe.
pub fn is_unavailable_before_any_message<B>(rsp: &Response<B>) -> bool {
    rsp.headers()
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"14")
        && is_grpc(rsp.headers())
}

/// Settles `ticket` for a gRPC answer: a trailers-only one by its status
/// now, any other by its trailers later. Returns the ticket for the
/// layer's usual judgement when the outcome is not a gRPC answer.
pub(crate) fn settle<RB>(
    result: &mut Result<Response<RB>, BoxError>,
    ticket: Ticket,
) -> Option<Ticket> {
    let Ok(rsp) = result else {
        return Some(ticket);
    };
    if !rsp.status().is_success() || !is_grpc(rsp.headers()) {
        return Some(ticket);
    }
    match rsp.headers().get("grpc-status") {
        Some(status) => ticket.finish(success(Some(status))),
        None => {
            let pending = PendingVerdict(Arc::new(Mutex::new(Some(ticket))));
            rsp.extensions_mut().insert(pending);
        }
    }
    None
}

/// Reports a [`PendingVerdict`] in `rsp`'s extensions when its body ends:
/// by `grpc-status` in the trailers, as a failure when the body fails or
/// ends without a status; dropped early (the caller went away), the ticket
/// is forgotten unless its deadline had passed.
pub fn judge_on_trailers(mut rsp: Response<BoxBody>) -> Response<BoxBody> {
    let Some(pending) = rsp.extensions_mut().remove::<PendingVerdict>() else {
        return rsp;
    };
    rsp.map(|inner| {
        http_body_util::BodyExt::boxed(Watched {
            inner,
            pending: Some(pending),
        })
    })
}

/// A response body that settles its [`PendingVerdict`] at its end.
struct Watched {
    inner: BoxBody,
    pending: Option<PendingVerdict>,
}

impl Watched {
    fn settle(&mut self, success: bool) {
        if let Some(PendingVerdict(slot)) = self.pending.take() {
            let ticket = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(t) = ticket {
                t.finish(success);
            }
        }
    }
}

impl Body for Watched {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let ok = success(trailers.get("grpc-status"));
                    self.settle(ok);
                }
            }
            Poll::Ready(Some(Err(_)) | None) => self.settle(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
