//! Body types shared by the listeners, the clients and the resilience layers.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

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
