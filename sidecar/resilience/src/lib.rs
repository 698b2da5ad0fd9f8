//! shardmesh-resilience: the tower layers that guard every connection of
//! the sidecar, following DESIGN.md's "Resilience semantics".
//!
//! # Layout
//! - [`errors`]: typed leaf errors the sidecar maps to HTTP reasons.
//! - [`observer`]: the events layers report (metrics live in the sidecar).
//! - [`body`]: buffering request bodies so retries can replay them.
//! - [`deadline`]: request deadlines and their propagation.
//! - [`backoff`]: exponential backoff with full jitter; injectable randomness.
//! - [`retry`]: safe retries under a retry budget, with per-try timeouts.
//! - [`breaker`]: per-peer circuit breakers: a pure state machine, a
//!   registry, and the layer.
//! - [`backpressure`]: inbound concurrency limit with a bounded queue.
//! - [`bulkhead`]: outbound pending caps per destination service.
//!
//! Every layer is generic over `http::Request<B>` and reports failures as
//! [`errors::BoxError`] holding one of the leaf errors.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod backpressure;
pub mod body;
pub mod breaker;
pub mod bulkhead;
pub mod deadline;
pub mod errors;
pub mod observer;
pub mod retry;

pub use backoff::Jitter;
pub use backpressure::{Backpressure, BackpressureLayer, BackpressureSettings};
pub use body::{BoxBody, NotRetryable, Prepared, ReplayableRequest};
pub use breaker::{BreakerLayer, BreakerService, BreakerSettings, Breakers, Peer};
pub use bulkhead::{Bulkhead, BulkheadLayer, BulkheadService, BulkheadSettings, Bulkheads};
pub use deadline::{Deadline, DeadlineLayer, DeadlineService, TimeoutSettings, TryDeadline};
pub use errors::{
    boxed_cause, find_cause, BadTimeoutHeader, BoxError, CircuitOpen, ConnectError,
    DeadlineExceeded, Overloaded, RetryBudgetExhausted, TryTimeout,
};
pub use observer::{BreakerState, NoopObserver, Observer, SharedObserver};
pub use retry::{Retry, RetryLayer, RetrySettings};
