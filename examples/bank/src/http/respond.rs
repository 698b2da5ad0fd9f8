//! JSON answers and the one place errors become HTTP.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::bank::BankError;

/// Body type of every app answer.
pub type Body = Full<Bytes>;

/// A JSON answer with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `{"error": reason, "message": message}` with `status`.
pub fn error(status: u16, reason: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": reason, "message": message }),
    )
}

/// Header telling the sidecar that this pod does not hold the request's
/// shard at the request's epoch and applied nothing (docs/sharding.md,
/// "Terms that end early"): the sidecar acquires the shard again at a fresh
/// epoch, so a pod whose term was voided (a newer owner's marker, a restart)
/// serves again instead of refusing until it is restarted.
pub const FENCED: &str = "x-shardmesh-fenced";

/// The HTTP answer for a bank error.
pub fn bank_error(e: &BankError) -> Response<Body> {
    let mut rsp = error_body(e);
    if matches!(e, BankError::NotOwned(_) | BankError::StaleEpoch { .. }) {
        rsp.headers_mut()
            .insert(FENCED, HeaderValue::from_static("true"));
    }
    rsp
}

fn error_body(e: &BankError) -> Response<Body> {
    match e {
        BankError::BadRequest(msg) => error(400, "bad-request", msg),
        BankError::NotOwned(shard) => error(
            503,
            "shard-not-owned",
            &format!("shard {shard} is not held by this pod"),
        ),
        BankError::StaleEpoch { shard, held, got } => error(
            409,
            "stale-epoch",
            &format!("shard {shard} is held at epoch {held}, request has {got}"),
        ),
        BankError::Unavailable(shard) => error(
            503,
            "shard-unavailable",
            &format!("shard {shard}: event log failed; re-acquire needed"),
        ),
        BankError::Internal(msg) => error(500, "internal", msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ownership_refusals_carry_the_fenced_header() {
        let fenced = |e: BankError| bank_error(&e).headers().contains_key(FENCED);
        assert!(fenced(BankError::NotOwned(3)));
        assert!(fenced(BankError::StaleEpoch {
            shard: 3,
            held: 9,
            got: 8
        }));
        // The outcome of a failed log write is unknown: not "nothing applied".
        assert!(!fenced(BankError::Unavailable(3)));
        assert!(!fenced(BankError::BadRequest("x".into())));
        assert!(!fenced(BankError::Internal("x".into())));
        assert_eq!(bank_error(&BankError::NotOwned(3)).status(), 503);
    }
}
