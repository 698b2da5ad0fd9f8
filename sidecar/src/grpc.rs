//! gRPC through the mesh (docs/grpc.md): a request is gRPC when its
//! `content-type` is `application/grpc` or `application/grpc+…`.
//!
//! The mesh routes gRPC like any request (service and key from the
//! `x-shardmesh-service` / `x-shardmesh-key` metadata); what differs is at
//! the edges:
//! - `grpc-timeout` from the app becomes the request deadline
//!   ([`deadline_from_grpc_timeout`]), and every hop forwards the remaining
//!   budget in `grpc-timeout` as well as `x-shardmesh-timeout-ms`
//!   ([`stamp_grpc_timeout`]);
//! - a mesh failure reaches the app as a trailers-only gRPC answer (HTTP
//!   200, `grpc-status`, `grpc-message`, `x-shardmesh-error`), never as the
//!   JSON body an HTTP client gets ([`answer`]). Between sidecars failures
//!   keep their HTTP form, so retries and breakers read them as they do for
//!   any request.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::Body as _;
use shardmesh_resilience::deadline::{MAX_TIMEOUT_MS, TIMEOUT_HEADER};
use std::task::Poll;

use crate::body::BoxBody;
use crate::headers;
use crate::reason::Reason;

/// `grpc-timeout`: the caller's deadline, `1`–`8` digits and a unit.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `grpc-status`: the call's status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`: the status message, percent-encoded.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The gRPC status codes the mesh answers with (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// 3: the caller's request is malformed for the mesh (no service, key).
    InvalidArgument = 3,
    /// 4: the deadline passed.
    DeadlineExceeded = 4,
    /// 7: the caller's identity may not call the service.
    PermissionDenied = 7,
    /// 8: shed by backpressure, or larger than the mesh accepts.
    ResourceExhausted = 8,
    /// 12: no such service in the mesh.
    Unimplemented = 12,
    /// 14: no owner, open breaker, owner unreachable: try again later.
    Unavailable = 14,
}

/// The gRPC status of each mesh reason.
pub fn code_of(reason: Reason) -> Code {
    match reason {
        Reason::BadRequest => Code::InvalidArgument,
        Reason::UnknownService => Code::Unimplemented,
        Reason::Overloaded | Reason::PayloadTooLarge | Reason::HeadersTooLarge => {
            Code::ResourceExhausted
        }
        Reason::CircuitOpen
        | Reason::NoOwner
        | Reason::RetryBudgetExhausted
        | Reason::Unavailable => Code::Unavailable,
        Reason::Timeout => Code::DeadlineExceeded,
        Reason::Forbidden => Code::PermissionDenied,
    }
}

/// Whether `headers` are those of a gRPC request or response.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/grpc") && matches!(v.get(16), None | Some(b'+') | Some(b';'))
    })
}

/// Parses a `grpc-timeout` value: up to 8 digits and one of `H M S m u n`.
pub fn parse_timeout(value: &HeaderValue) -> Option<Duration> {
    let v = value.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The most the mesh's deadline keeps under the app's `grpc-timeout`
/// (see [`deadline_from_grpc_timeout`]).
const MAX_HEADROOM_MS: u64 = 20;

/// Turns the app's `grpc-timeout` into the mesh deadline header, unless
/// the request names one itself: rounded up to whole milliseconds, less a
/// headroom of a twentieth (at most [`MAX_HEADROOM_MS`]), at least 1, at
/// most the mesh's longest deadline. An unreadable value is ignored (the
/// route's default deadline applies), as gRPC servers do.
///
/// The headroom: the app's client started its own timer for the same
/// `grpc-timeout` before the request reached the sidecar. With equal
/// budgets that timer wins the race, and the app sees its client's
/// CANCELLED instead of the mesh's DEADLINE_EXCEEDED with the mesh reason
/// (Envoy's `grpc_timeout_header_offset` subtracts for the same reason).
pub fn deadline_from_grpc_timeout(headers: &mut HeaderMap) {
    if headers.contains_key(TIMEOUT_HEADER) {
        return;
    }
    let Some(timeout) = headers.get(GRPC_TIMEOUT).and_then(parse_timeout) else {
        return;
    };
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    let headroom = (ms / 20).min(MAX_HEADROOM_MS);
    let ms = (ms - headroom).clamp(1, MAX_TIMEOUT_MS);
    headers.insert(TIMEOUT_HEADER, HeaderValue::from(ms));
}

/// Copies the remaining budget the deadline layer wrote into
/// `x-shardmesh-timeout-ms` to `grpc-timeout` (in milliseconds), so the
/// next hop and the app see the reduced deadline.
pub fn stamp_grpc_timeout(headers: &mut HeaderMap) {
    let Some(ms) = headers.get(TIMEOUT_HEADER).cloned() else {
        return;
    };
    let mut value = Vec::with_capacity(ms.len() + 1);
    value.extend_from_slice(ms.as_bytes());
    value.push(b'm');
    if let Ok(v) = HeaderValue::from_bytes(&value) {
        headers.insert(GRPC_TIMEOUT, v);
    }
}

/// Prepares a gRPC request for the app: the reduced `grpc-timeout`, and
/// `te: trailers` (hop-by-hop, so stripped on the way; gRPC servers may
/// require it).
pub fn to_app(headers: &mut HeaderMap) {
    stamp_grpc_timeout(headers);
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
}

/// The app-facing answer of a gRPC call: a mesh failure (a response with
/// `x-shardmesh-error` and an HTTP error status, made here or by the peer
/// sidecar) becomes a trailers-only gRPC response; anything else passes.
///
/// Returned boxed from a plain fn: awaited inside an async fn, reading the
/// body trips rustc's higher-ranked `Send` check on `BoxBody`'s error (the
/// limitation `proxy::call` works around).
pub fn answer(rsp: Response<BoxBody>) -> crate::proxy::Answer {
    Box::pin(answer_inner(rsp))
}

async fn answer_inner(rsp: Response<BoxBody>) -> Response<BoxBody> {
    if rsp.status().as_u16() < 400 {
        return rsp;
    }
    let Some(reason) = rsp
        .headers()
        .get(headers::ERROR)
        .and_then(Reason::from_header)
    else {
        return rsp;
    };
    let (parts, body) = rsp.into_parts();
    let message = failure_message(body).await;
    let mut out = trailers_only(reason, &message);
    for name in [headers::SERVED_BY, headers::OWNER, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The message of a mesh failure's JSON body (`{"error", "message"}`),
/// read with a small bound in size and time; empty when unreadable. A
/// hand-polled loop: `collect()` here trips the same `Send` check.
async fn failure_message(body: BoxBody) -> String {
    const MAX: usize = 8 * 1024;
    let mut body = body;
    let mut buf = Vec::new();
    let read = std::future::poll_fn(move |cx| loop {
        match std::pin::Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > MAX {
                        return Poll::Ready(Vec::new());
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Vec::new()),
            Poll::Ready(None) => return Poll::Ready(std::mem::take(&mut buf)),
        }
    });
    let Ok(bytes) = tokio::time::timeout(Duration::from_secs(1), read).await else {
        return String::new();
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_default()
}

/// A trailers-only gRPC response for a mesh failure: HTTP 200, the status
/// in the head, the reason in `grpc-message` and `x-shardmesh-error`.
pub fn trailers_only(reason: Reason, message: &str) -> Response<BoxBody> {
    let text = if message.is_empty() {
        reason.as_str().to_string()
    } else {
        format!("{}: {message}", reason.as_str())
    };
    let mut rsp = Response::new(crate::body::empty());
    *rsp.status_mut() = StatusCode::OK;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS, HeaderValue::from(code_of(reason) as u16));
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(percent_encode(&text))) {
        h.insert(GRPC_MESSAGE, v);
    }
    h.insert(headers::ERROR, HeaderValue::from_static(reason.as_str()));
    rsp
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable
/// ASCII, and `%`, as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
