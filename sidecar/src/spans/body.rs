//! A response body that ends its hop's span when it ends: a streaming
//! call's outcome (gRPC's `grpc-status`) comes in the trailers, after the
//! head, so a span that ended with the head would miss it. Only sampled
//! requests get this wrapper ([`HopSpan::end_with`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use opentelemetry::KeyValue;

use super::HopSpan;
use crate::body::{BoxBody, BoxError};

/// The response body of a sampled hop, carrying its span to the body's end.
pub(super) struct SpanBody {
    inner: BoxBody,
    /// Taken when the span ends.
    span: Option<HopSpan>,
}

// === impl SpanBody ===

impl SpanBody {
    /// Wraps `inner`; `span` ends with it.
    pub(super) fn wrap(inner: BoxBody, span: HopSpan) -> BoxBody {
        http_body_util::BodyExt::boxed(SpanBody {
            inner,
            span: Some(span),
        })
    }

    /// Ends the span after `record` added what the end says.
    fn end(&mut self, record: impl FnOnce(&HopSpan)) {
        if let Some(span) = self.span.take() {
            record(&span);
            span.finish();
        }
    }
}

impl Body for SpanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => {
                    let status = trailers.get(crate::grpc::GRPC_STATUS).cloned();
                    self.end(|span| {
                        if let Some(status) = &status {
                            span.record_grpc_status(status);
                        }
                    });
                }
                // Senders stop polling once the body says it ended.
                None if self.inner.is_end_stream() => self.end(|_| {}),
                None => {}
            },
            Poll::Ready(None) => self.end(|_| {}),
            Poll::Ready(Some(Err(e))) => {
                let message = format!("response body failed: {e}");
                self.end(|span| span.set_status(opentelemetry::trace::Status::error(message)));
            }
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

impl Drop for SpanBody {
    fn drop(&mut self) {
        // Dropped before its end: the receiver went away (a cancelled call,
        // a reset stream) and the outcome is unknown.
        if !self.inner.is_end_stream() {
            self.end(|span| span.set(KeyValue::new("shardmesh.response_incomplete", true)));
        } else {
            self.end(|_| {});
        }
    }
}
