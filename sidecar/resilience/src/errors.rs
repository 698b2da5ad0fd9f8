//! Typed leaf errors. Layers box them into [`BoxError`]; the sidecar's one
//! rescue function walks the `source()` chain with [`find_cause`] and maps
//! each leaf to a DESIGN.md reason (`overloaded`, `circuit-open`, ...).

use std::error::Error;
use std::time::Duration;

/// The error type every layer in this crate returns, as tower expects.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The request was shed before anything processed it (`overloaded`, 503).
/// Safe to retry anywhere, because nothing ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("overloaded: request shed before processing (retry after {retry_after:?})")]
pub struct Overloaded {
    /// Hint for the `Retry-After` header.
    pub retry_after: Duration,
}

/// The destination pod's circuit breaker is open; failing fast (`circuit-open`, 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker for peer {peer} is open")]
pub struct CircuitOpen {
    /// The peer whose breaker refused the request.
    pub peer: String,
}

/// A retry was needed but the retry budget refused it (`retry-budget-exhausted`, 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("retry budget exhausted")]
pub struct RetryBudgetExhausted;

/// The request's deadline passed (`timeout`, 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request deadline exceeded")]
pub struct DeadlineExceeded;

/// One try ran longer than the per-try timeout while the request deadline
/// had time left (`timeout`, 504, when no retry follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("try timed out after {after:?}")]
pub struct TryTimeout {
    /// The per-try timeout that elapsed.
    pub after: Duration,
}

/// The `x-shardmesh-timeout-ms` header is not a positive integer (`bad-request`, 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid x-shardmesh-timeout-ms header {value:?}: expected milliseconds between 1 and {max}"
)]
pub struct BadTimeoutHeader {
    /// The offending value, lossily decoded, for the error message.
    pub value: String,
    /// The largest accepted value.
    pub max: u64,
}

/// Connecting to the peer failed, so nothing was sent. The sidecar's HTTP
/// client wraps connect failures in it, which tells the retry layer that any
/// request, even a POST, may be retried.
#[derive(Debug, thiserror::Error)]
#[error("connect failed: {0}")]
pub struct ConnectError(#[source] pub BoxError);

/// Finds the first error of type `E` in `err`'s `source()` chain, `err` included.
pub fn find_cause<'a, E: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Like [`find_cause`] for a [`BoxError`], the shape errors have in a stack.
pub fn boxed_cause<E: Error + 'static>(err: &BoxError) -> Option<&E> {
    find_cause::<E>(&**err as &(dyn Error + 'static))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn find_cause_walks_the_source_chain() {
        let inner: BoxError = Box::new(ConnectError(Box::new(std::io::Error::other("refused"))));
        let outer: BoxError = Box::new(Wrapper(inner));
        assert!(boxed_cause::<ConnectError>(&outer).is_some());
        assert!(boxed_cause::<std::io::Error>(&outer).is_some());
        assert!(boxed_cause::<Overloaded>(&outer).is_none());
    }

    #[test]
    fn find_cause_matches_the_error_itself() {
        let e: BoxError = Box::new(CircuitOpen {
            peer: "bank-0".into(),
        });
        let found = boxed_cause::<CircuitOpen>(&e).map(|c| c.peer.as_str());
        assert_eq!(found, Some("bank-0"));
    }
}
