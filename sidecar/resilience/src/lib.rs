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
//! Every layer is generic over `http::Request<B>` (the retry layer needs
//! [`BoxBody`] to replay bodies) and reports failures as [`BoxError`]
//! holding one of the leaf errors in [`errors`].
//!
//! # Composing a route
//!
//! Outbound, per destination service; the order matters:
//! - the deadline outermost, so queueing and every retry spend one budget;
//! - the bulkhead outside the retry loop, so a full bulkhead refuses at
//!   once instead of being retried;
//! - the router (which picks the owner and sets [`Peer`]) inside the retry
//!   loop, so a keyless retry may pick another endpoint;
//! - the breaker innermost, so each try counts for the peer it went to.
//!
//! Inbound, [`BackpressureLayer`] in front of the app (one per app, shared
//! by all connections), under a [`DeadlineLayer`].
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use shardmesh_resilience::*;
//! use tower::ServiceBuilder;
//!
//! let policy = shardmesh_config::ResiliencePolicy::default();
//! let observer: SharedObserver = Arc::new(NoopObserver);
//! let bulkheads = Bulkheads::new(observer.clone());
//! let breakers = Breakers::new(BreakerSettings::from(&policy.breaker), observer.clone());
//! let client = tower::service_fn(|_req: http::Request<BoxBody>| async {
//!     Ok::<_, BoxError>(http::Response::new(()))
//! });
//! let route = ServiceBuilder::new()
//!     .layer(DeadlineLayer::from(&TimeoutSettings::from(&policy.timeouts)))
//!     .layer(BulkheadLayer::new(bulkheads.get("bank", (&policy.bulkhead).into())))
//!     .layer(RetryLayer::new("bank", RetrySettings::from(&policy), observer))
//!     .map_request(|mut req: http::Request<BoxBody>| {
//!         req.extensions_mut().insert(Peer("bank-0".into())); // the router's pick
//!         req
//!     })
//!     .layer(BreakerLayer::new(breakers))
//!     .service(client);
//! # let _ = route;
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

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
pub use body::{BoxBody, NotRetryable, Prepared, ReplayableRequest, RequestBodyError};
pub use breaker::{BreakerLayer, BreakerService, BreakerSettings, Breakers, Peer};
pub use bulkhead::{Bulkhead, BulkheadLayer, BulkheadService, BulkheadSettings, Bulkheads};
pub use deadline::{
    try_ends, Deadline, DeadlineLayer, DeadlineService, TimeoutSettings, TryDeadline,
};
pub use errors::{
    boxed_cause, find_cause, BadTimeoutHeader, BoxError, CircuitOpen, ConnectError,
    DeadlineExceeded, Overloaded, RetryBudgetExhausted, TryTimeout,
};
pub use observer::{BreakerState, NoopObserver, Observer, SharedObserver};
pub use retry::{Retry, RetryLayer, RetrySettings};
