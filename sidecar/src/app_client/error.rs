//! Why an exchange with the app failed.

use shardmesh_resilience::BoxError;

/// A failure talking HTTP/1.1 to the app. Body errors keep their source, so
/// the rescue layer still finds a request body's own error (too large,
/// unreadable) behind it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The connection failed while sending or receiving.
    #[error("app connection: {0}")]
    Io(#[from] std::io::Error),
    /// The app closed the connection before a response.
    #[error("the app closed the connection before answering")]
    ClosedBeforeResponse,
    /// The response head was malformed.
    #[error("malformed response head from the app: {0}")]
    BadHead(String),
    /// The response head exceeded the limit.
    #[error(
        "response head from the app larger than {} bytes",
        super::head::MAX_HEAD_BYTES
    )]
    HeadTooLarge,
    /// The response body's framing was broken.
    #[error("malformed response body from the app: {0}")]
    BadBody(&'static str),
    /// The request body failed while it was being sent.
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
    /// The request body did not match its declared length.
    #[error("request body length does not match content-length")]
    RequestLength,
}
