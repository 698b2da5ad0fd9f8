//! Request bodies for replay. Retrying needs the body again for every try,
//! so small bodies (64 KiB by default) are buffered once; larger ones stream
//! through untouched after the prefix already read and are marked
//! [`NotRetryable`]. At most `limit` bytes plus one frame are ever held.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::errors::BoxError;

pub mod tee;
pub use tee::Tee;

/// The body type the retry layer works on: any body, boxed.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Bodies up to this size are buffered for replay unless configured otherwise.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// Extension on a request whose body streams: it must not be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRetryable;

/// Reading the caller's request body failed while buffering it for replay.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body failed: {0}")]
pub struct RequestBodyError(#[source] pub BoxError);

/// A request made ready for tries: either replayable or one-shot.
#[derive(Debug)]
pub enum Prepared {
    /// The body fit under the limit and can be sent again for each try.
    Replayable(ReplayableRequest),
    /// The body was too large: this request streams once, marked [`NotRetryable`].
    Streaming(Request<BoxBody>),
}

/// A request head plus its fully buffered body.
#[derive(Debug, Clone)]
pub struct ReplayableRequest {
    parts: http::request::Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
}

/// Wraps any body whose error converts into [`BoxError`] as a [`BoxBody`].
pub fn boxed<B>(body: B) -> BoxBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// An empty [`BoxBody`].
pub fn empty() -> BoxBody {
    boxed(http_body_util::Empty::new())
}

/// A [`BoxBody`] holding `data`.
pub fn full(data: impl Into<Bytes>) -> BoxBody {
    boxed(http_body_util::Full::new(data.into()))
}

/// What [`prepare_now`] could decide without reading the body.
#[derive(Debug)]
pub enum Decided {
    /// Decided: an empty body (replayable) or a declared length over the
    /// limit (streaming).
    Now(Prepared),
    /// The body must be read: hand the request to [`prepare`].
    NeedsRead(Request<BoxBody>),
}

/// The cases [`prepare`] can decide without reading, so callers can skip an
/// await (and a large future) for the common bodiless request.
pub fn prepare_now(req: Request<BoxBody>, limit: usize) -> Decided {
    if req.body().is_end_stream() {
        let (parts, _) = req.into_parts();
        return Decided::Now(Prepared::Replayable(ReplayableRequest {
            parts,
            data: Bytes::new(),
            trailers: None,
        }));
    }
    if too_large(&req, limit as u64) {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(NotRetryable);
        return Decided::Now(Prepared::Streaming(Request::from_parts(parts, body)));
    }
    Decided::NeedsRead(req)
}

fn too_large(req: &Request<BoxBody>, limit: u64) -> bool {
    req.body().size_hint().lower() > limit || declared_length(req.headers()) > Some(limit)
}

/// Buffers `req`'s body if it fits in `limit` bytes so it can be replayed;
/// otherwise returns a request that streams the prefix already read followed
/// by the rest of the body. A declared length (size hint or
/// `Content-Length`) over the limit skips reading altogether.
pub async fn prepare(req: Request<BoxBody>, limit: usize) -> Result<Prepared, BoxError> {
    let req = match prepare_now(req, limit) {
        Decided::Now(prepared) => return Ok(prepared),
        Decided::NeedsRead(req) => req,
    };
    let (mut parts, mut body) = req.into_parts();

    let mut buffered = Buffered::default();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Box::new(RequestBodyError(e)) as BoxError)?;
        let frame = match frame.into_data() {
            Ok(data) if buffered.len.saturating_add(data.len()) <= limit => {
                buffered.push(data);
                continue;
            }
            Ok(data) => Frame::data(data),
            Err(frame) => match frame.into_trailers() {
                Ok(t) => {
                    trailers = Some(t);
                    continue;
                }
                // Neither data nor trailers: an unknown frame kind we cannot
                // replay faithfully, so stream it once.
                Err(other) => other,
            },
        };
        // Over the limit: stop reading and stream what we have, then the rest.
        let mut prefix = VecDeque::with_capacity(2);
        if buffered.len > 0 {
            prefix.push_back(Frame::data(buffered.into_bytes()));
        }
        prefix.push_back(frame);
        parts.extensions.insert(NotRetryable);
        let streaming = Prefixed { prefix, rest: body };
        return Ok(Prepared::Streaming(Request::from_parts(
            parts,
            streaming.boxed(),
        )));
    }

    let data = buffered.into_bytes();
    Ok(Prepared::Replayable(ReplayableRequest {
        parts,
        data,
        trailers,
    }))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Body bytes read so far. One chunk is kept as it is (no copy); more are
/// copied into one buffer, so many tiny frames cannot cost more memory than
/// their bytes (a `Vec<Bytes>` would hold 32 bytes of handle per frame).
#[derive(Default)]
struct Buffered {
    first: Option<Bytes>,
    rest: BytesMut,
    len: usize,
}

impl Buffered {
    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.rest.extend_from_slice(&first);
        }
        self.rest.extend_from_slice(&data);
    }

    fn into_bytes(self) -> Bytes {
        match self.first {
            Some(first) => first,
            None => self.rest.freeze(),
        }
    }
}

// === impl Prepared ===

impl Prepared {
    /// Whether the request can be sent more than once.
    pub fn is_replayable(&self) -> bool {
        matches!(self, Prepared::Replayable(_))
    }
}

// === impl ReplayableRequest ===

impl ReplayableRequest {
    /// A fresh copy of the request for one try. Cheap: the body is shared.
    pub fn request(&self) -> Request<BoxBody> {
        let body = ReplayBody {
            data: (!self.data.is_empty()).then(|| self.data.clone()),
            trailers: self.trailers.clone(),
        };
        Request::from_parts(self.parts.clone(), body.boxed())
    }

    /// The request head, for classification (method, headers, extensions).
    pub fn parts(&self) -> &http::request::Parts {
        &self.parts
    }

    /// Size of the buffered body in bytes.
    pub fn body_len(&self) -> usize {
        self.data.len()
    }
}

/// A buffered body replayed from shared bytes.
struct ReplayBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The frames already read, then the rest of the original body.
struct Prefixed {
    prefix: VecDeque<Frame<Bytes>>,
    rest: BoxBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .prefix
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

#[cfg(test)]
mod tests;
