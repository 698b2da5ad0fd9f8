//! A request body that streams to the peer while it is recorded for replay,
//! for gRPC calls (docs/grpc.md). [`prepare`](super::prepare) reads a body
//! before the first try, which a streaming call cannot wait for: a
//! bidirectional call's client may send its next message only after an
//! answer, or none before one. Here every try's body replays what earlier
//! tries read and then goes on reading the caller's body, so nothing waits.
//!
//! The call may be tried again while [`Tee::replayable`]: nothing read yet,
//! or the whole request stream read within the limit (a unary call, or a
//! streaming call whose client had finished). A call whose stream was
//! still open when its try failed, or that outgrew the limit, is not
//! replayed: its messages are not all known, and the limit bounds memory.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::BoxBody;
use crate::errors::BoxError;

/// The caller's body, shared by the tries' bodies.
#[derive(Clone)]
pub struct Tee(Arc<Mutex<State>>);

struct State {
    /// The caller's body; `None` once it ended or failed.
    source: Option<BoxBody>,
    /// Data read so far, while within `limit`.
    recorded: Vec<Bytes>,
    recorded_len: usize,
    trailers: Option<HeaderMap>,
    /// The caller's body ended (all of it is recorded unless `spoiled`).
    ended: bool,
    /// Read past the limit, or failed: no replay.
    spoiled: bool,
    limit: usize,
    /// The try whose body may read; older tries' bodies end.
    generation: u64,
}

/// One try's body.
struct TeeBody {
    tee: Tee,
    generation: u64,
    /// Recorded chunks this body has sent.
    next: usize,
    trailers_sent: bool,
}

impl Tee {
    /// Wraps the caller's `body`, recording up to `limit` bytes.
    pub fn new(body: BoxBody, limit: usize) -> Self {
        let ended = body.is_end_stream();
        Self(Arc::new(Mutex::new(State {
            source: (!ended).then_some(body),
            recorded: Vec::new(),
            recorded_len: 0,
            trailers: None,
            ended,
            spoiled: false,
            limit,
            generation: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another try may send the request again.
    pub fn replayable(&self) -> bool {
        let s = self.lock();
        !s.spoiled && (s.ended || s.recorded.is_empty())
    }

    /// The body of the next try; bodies of earlier tries stop reading.
    pub fn body(&self) -> BoxBody {
        let generation = {
            let mut s = self.lock();
            s.generation += 1;
            s.generation
        };
        http_body_util::BodyExt::boxed(TeeBody {
            tee: self.clone(),
            generation,
            next: 0,
            trailers_sent: false,
        })
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut s = this.tee.lock();
        if s.generation != this.generation {
            return Poll::Ready(Some(Err("superseded by a retry".into())));
        }
        if let Some(chunk) = s.recorded.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
        }
        if s.spoiled && this.next < s.recorded.len() {
            return Poll::Ready(Some(Err("request body no longer replayable".into())));
        }
        let Some(source) = s.source.as_mut() else {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        };
        let polled = Pin::new(source).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.source = None;
                s.ended = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.source = None;
                s.spoiled = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        let within = s.recorded_len.saturating_add(data.len()) <= s.limit;
                        if within && !s.spoiled {
                            s.recorded_len += data.len();
                            s.recorded.push(data.clone());
                            this.next = s.recorded.len();
                        } else {
                            // Past the limit: stream on, never replay.
                            s.spoiled = true;
                            s.recorded = Vec::new();
                            this.next = 0;
                        }
                        Frame::data(data)
                    }
                    Err(frame) => {
                        if let Some(t) = frame.trailers_ref() {
                            s.trailers = Some(t.clone());
                            this.trailers_sent = true;
                        }
                        frame
                    }
                };
                if s.source.as_ref().is_some_and(|b| b.is_end_stream()) {
                    s.source = None;
                    s.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.tee.lock();
        s.generation == self.generation
            && self.next >= s.recorded.len()
            && s.source.is_none()
            && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

#[cfg(test)]
mod tests;
