//! Which outcomes may be retried (DESIGN.md "Retries"): connect failures
//! and `overloaded` or `no-owner` refusals from a peer sidecar always
//! (nothing ran: the peer refused before its app saw the request; DESIGN.md
//! names only `overloaded`, but a shard in handoff is the same case, and a
//! POST refused during a scale-in must not fail); 502/503/504 and other
//! errors only for idempotent requests; never a passed deadline or a
//! refusal made on purpose (open breaker, exhausted budget, bad input).

use http::{HeaderMap, Method, Response, StatusCode};

use crate::body::RequestBodyError;
use crate::errors::{
    boxed_cause, BadTimeoutHeader, BoxError, CircuitOpen, ConnectError, DeadlineExceeded,
    Overloaded, RetryBudgetExhausted,
};

/// Header the mesh puts on its own error responses.
pub const ERROR_HEADER: &str = "x-shardmesh-error";

/// Header by which a caller declares a non-idempotent method safe to retry.
pub const IDEMPOTENT_HEADER: &str = "x-shardmesh-idempotent";

/// What one try's outcome allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Return the outcome as it is.
    Final,
    /// Nothing was processed: any request may be retried.
    RetryAlways,
    /// The peer may have processed the request: retry only if idempotent.
    RetryIfIdempotent,
}

/// Whether the request may be processed twice: GET, HEAD, OPTIONS, PUT,
/// DELETE, or `x-shardmesh-idempotent: true`.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || headers
        .get(IDEMPOTENT_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

/// Classifies one try's outcome.
pub fn classify<B>(outcome: &Result<Response<B>, BoxError>) -> Verdict {
    match outcome {
        Ok(rsp) => classify_response(rsp),
        Err(e) => classify_error(e),
    }
}

fn classify_response<B>(rsp: &Response<B>) -> Verdict {
    // gRPC's rule: UNAVAILABLE before any response message is retried.
    if crate::breaker::grpc::is_unavailable_before_any_message(rsp) {
        return Verdict::RetryAlways;
    }
    let refused = rsp
        .headers()
        .get(ERROR_HEADER)
        .is_some_and(|v| v.as_bytes() == b"overloaded" || v.as_bytes() == b"no-owner");
    if refused {
        return Verdict::RetryAlways;
    }
    match rsp.status() {
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            Verdict::RetryIfIdempotent
        }
        _ => Verdict::Final,
    }
}

fn classify_error(e: &BoxError) -> Verdict {
    if boxed_cause::<ConnectError>(e).is_some() || boxed_cause::<Overloaded>(e).is_some() {
        return Verdict::RetryAlways;
    }
    let deliberate = boxed_cause::<DeadlineExceeded>(e).is_some()
        || boxed_cause::<CircuitOpen>(e).is_some()
        || boxed_cause::<RetryBudgetExhausted>(e).is_some()
        || boxed_cause::<BadTimeoutHeader>(e).is_some()
        || boxed_cause::<RequestBodyError>(e).is_some();
    if deliberate {
        Verdict::Final
    } else {
        Verdict::RetryIfIdempotent
    }
}

/// Whether an outcome counts as a failure for the budget rule: an error or a 5xx.
pub fn is_failure<B>(outcome: &Result<Response<B>, BoxError>) -> bool {
    match outcome {
        Ok(rsp) => rsp.status().is_server_error(),
        Err(_) => true,
    }
}
