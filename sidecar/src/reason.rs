//! The reasons a mesh-generated response can carry (DESIGN.md, "External
//! contract"): one enum so every failure maps to exactly one status, header
//! value and JSON body.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::BoxBody;
use crate::headers;

/// Why the mesh answered instead of the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Missing or invalid service, key or mesh header.
    BadRequest,
    /// No such service in the mesh view.
    UnknownService,
    /// Shed by backpressure; nothing was processed.
    Overloaded,
    /// The owner's breaker is open; failing fast.
    CircuitOpen,
    /// The shard has no live owner right now.
    NoOwner,
    /// The retry budget refused another try.
    RetryBudgetExhausted,
    /// The connection to the owner failed after retries.
    Unavailable,
    /// The request deadline passed.
    Timeout,
    /// The request head was larger than allowed.
    HeadersTooLarge,
    /// The caller's mesh identity may not call this service.
    Forbidden,
    /// The request body was larger than `limits.maxRequestBodyBytes`.
    PayloadTooLarge,
}

impl Reason {
    /// Every reason, for metrics initialisation and docs.
    pub const ALL: [Reason; 11] = [
        Reason::BadRequest,
        Reason::UnknownService,
        Reason::Overloaded,
        Reason::CircuitOpen,
        Reason::NoOwner,
        Reason::RetryBudgetExhausted,
        Reason::Unavailable,
        Reason::Timeout,
        Reason::HeadersTooLarge,
        Reason::Forbidden,
        Reason::PayloadTooLarge,
    ];

    /// The value of `x-shardmesh-error` and of the `reason` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad-request",
            Reason::UnknownService => "unknown-service",
            Reason::Overloaded => "overloaded",
            Reason::CircuitOpen => "circuit-open",
            Reason::NoOwner => "no-owner",
            Reason::RetryBudgetExhausted => "retry-budget-exhausted",
            Reason::Unavailable => "unavailable",
            Reason::Timeout => "timeout",
            Reason::HeadersTooLarge => "headers-too-large",
            Reason::Forbidden => "forbidden",
            Reason::PayloadTooLarge => "payload-too-large",
        }
    }

    /// The HTTP status the reason is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::UnknownService => StatusCode::NOT_FOUND,
            Reason::Overloaded
            | Reason::CircuitOpen
            | Reason::NoOwner
            | Reason::RetryBudgetExhausted => StatusCode::SERVICE_UNAVAILABLE,
            Reason::Unavailable => StatusCode::BAD_GATEWAY,
            Reason::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reason::Forbidden => StatusCode::FORBIDDEN,
            Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Parses a header value written by another sidecar.
    pub fn from_header(value: &HeaderValue) -> Option<Reason> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str().as_bytes() == value.as_bytes())
    }
}

/// A mesh-generated failure: reason, message and, for `overloaded`, when to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshFailure {
    /// Which of the contract's reasons.
    pub reason: Reason,
    /// A sentence for the person reading logs or the body.
    pub message: String,
    /// `Retry-After` for shed requests.
    pub retry_after: Option<Duration>,
}

impl MeshFailure {
    /// A failure with a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Renders the failure as the contract's response: status, `x-shardmesh-error`,
    /// optional `Retry-After`, and a small JSON body.
    pub fn into_response(self, served_by: &HeaderValue) -> Response<BoxBody> {
        let body = serde_json::json!({
            "error": self.reason.as_str(),
            "message": self.message,
        })
        .to_string();
        let mut rsp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *rsp.status_mut() = self.reason.status();
        let h = rsp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            headers::ERROR,
            HeaderValue::from_static(self.reason.as_str()),
        );
        h.insert(headers::SERVED_BY, served_by.clone());
        if let Some(after) = self.retry_after {
            // Whole seconds, at least 1: Retry-After has no fractions.
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        rsp
    }
}

impl std::fmt::Display for MeshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl std::error::Error for MeshFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_contract_response() {
        let mut f = MeshFailure::new(Reason::Overloaded, "queue full");
        f.retry_after = Some(Duration::from_millis(300));
        let rsp = f.into_response(&HeaderValue::from_static("bank-0"));
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rsp.headers()[headers::ERROR], "overloaded");
        assert_eq!(rsp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(rsp.headers()[headers::SERVED_BY], "bank-0");
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "overloaded");
        assert_eq!(json["message"], "queue full");
    }

    #[test]
    fn reasons_round_trip_through_header() {
        for r in Reason::ALL {
            assert_eq!(
                Reason::from_header(&HeaderValue::from_static(r.as_str())),
                Some(r)
            );
        }
        assert_eq!(Reason::from_header(&HeaderValue::from_static("nope")), None);
    }
}
