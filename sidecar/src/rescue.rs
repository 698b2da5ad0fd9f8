//! The one place where errors become HTTP answers: walks an error's source
//! chain for a typed leaf and maps it to a contract reason (Linkerd's
//! "rescue" shape).

use shardmesh_resilience::body::RequestBodyError;
use shardmesh_resilience::{
    boxed_cause, BadTimeoutHeader, BoxError, CircuitOpen, ConnectError, DeadlineExceeded,
    Overloaded, RetryBudgetExhausted, TryTimeout,
};

use crate::reason::{MeshFailure, Reason};

/// Maps any error from a proxy stack to the failure the caller sees.
pub fn rescue(err: &BoxError) -> MeshFailure {
    if let Some(f) = boxed_cause::<MeshFailure>(err) {
        return f.clone();
    }
    if let Some(o) = boxed_cause::<Overloaded>(err) {
        let mut f = MeshFailure::new(Reason::Overloaded, o.to_string());
        f.retry_after = Some(o.retry_after);
        return f;
    }
    if let Some(c) = boxed_cause::<CircuitOpen>(err) {
        return MeshFailure::new(Reason::CircuitOpen, c.to_string());
    }
    if boxed_cause::<RetryBudgetExhausted>(err).is_some() {
        return MeshFailure::new(
            Reason::RetryBudgetExhausted,
            "the retry budget refused another try",
        );
    }
    if boxed_cause::<DeadlineExceeded>(err).is_some() {
        return MeshFailure::new(Reason::Timeout, "the request deadline passed");
    }
    if let Some(t) = boxed_cause::<TryTimeout>(err) {
        return MeshFailure::new(Reason::Timeout, t.to_string());
    }
    if let Some(b) = boxed_cause::<BadTimeoutHeader>(err) {
        return MeshFailure::new(Reason::BadRequest, b.to_string());
    }
    if boxed_cause::<http_body_util::LengthLimitError>(err).is_some() {
        return MeshFailure::new(
            Reason::PayloadTooLarge,
            "the request body is larger than limits.maxRequestBodyBytes",
        );
    }
    if let Some(b) = boxed_cause::<RequestBodyError>(err) {
        return MeshFailure::new(
            Reason::BadRequest,
            format!("reading the request body failed: {b}"),
        );
    }
    if let Some(c) = boxed_cause::<ConnectError>(err) {
        return MeshFailure::new(Reason::Unavailable, c.to_string());
    }
    MeshFailure::new(Reason::Unavailable, format!("upstream failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn maps_each_leaf_to_its_reason() {
        let cases: Vec<(BoxError, Reason)> = vec![
            (
                Box::new(Overloaded {
                    retry_after: Duration::from_secs(1),
                }),
                Reason::Overloaded,
            ),
            (
                Box::new(CircuitOpen { peer: "p".into() }),
                Reason::CircuitOpen,
            ),
            (Box::new(RetryBudgetExhausted), Reason::RetryBudgetExhausted),
            (Box::new(DeadlineExceeded), Reason::Timeout),
            (
                Box::new(ConnectError(Box::new(std::io::Error::other("refused")))),
                Reason::Unavailable,
            ),
            (
                Box::new(std::io::Error::other("reset")),
                Reason::Unavailable,
            ),
            (
                Box::new(MeshFailure::new(Reason::NoOwner, "x")),
                Reason::NoOwner,
            ),
        ];
        for (err, reason) in cases {
            assert_eq!(rescue(&err).reason, reason, "{err}");
        }
    }

    #[test]
    fn overloaded_keeps_retry_after() {
        let err: BoxError = Box::new(Overloaded {
            retry_after: Duration::from_secs(2),
        });
        assert_eq!(rescue(&err).retry_after, Some(Duration::from_secs(2)));
    }
}
