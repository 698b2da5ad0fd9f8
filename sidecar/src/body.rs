//! Body types shared by the listeners, the clients and the resilience layers.

use bytes::Bytes;

use http_body_util::{BodyExt, Empty, Full, Limited};

use crate::reason::{MeshFailure, Reason};

/// Boxed errors crossing layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type inside the proxy: every listener boxes what it receives
/// so layers need not be generic over bodies. Same type as the resilience
/// crate's alias.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body with fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Caps a request body at `limit` bytes while it streams: the whole body is
/// never buffered to count it, and a larger one fails with
/// [`http_body_util::LengthLimitError`] (rescued as `payload-too-large`).
pub fn limited<B>(body: B, limit: u64) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Limited::new(body, limit).boxed()
}

/// Refuses at once a request whose body is known to exceed `limit`: its
/// declared `Content-Length`, which both listeners' bodies report as their
/// size hint (no header look-up). Bodies without one are caught by
/// [`limited`] while streaming.
pub fn check_length(body: &impl http_body::Body, limit: u64) -> Result<(), MeshFailure> {
    if body.size_hint().lower() > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

/// The failure of a body larger than `limit`.
pub fn too_large(limit: u64) -> MeshFailure {
    MeshFailure::new(
        Reason::PayloadTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// A request body as a listener received it: streamed by hyper, or read
/// whole by the HTTP/1.1 fast path ([`crate::h1`]).
#[derive(Debug)]
pub enum RequestBody {
    /// Streaming from hyper's connection.
    Streamed(hyper::body::Incoming),
    /// Read whole (`None`: empty), taken once.
    Whole(Option<Bytes>),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Streamed(body) => {
                std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into)
            }
            RequestBody::Whole(data) => {
                std::task::Poll::Ready(data.take().map(|d| Ok(http_body::Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(body) => body.is_end_stream(),
            RequestBody::Whole(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RequestBody::Streamed(body) => body.size_hint(),
            RequestBody::Whole(data) => {
                http_body::SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
