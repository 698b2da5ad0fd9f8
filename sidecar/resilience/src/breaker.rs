//! Per-peer circuit breakers (DESIGN.md "Circuit breaker").
//!
//! Shaped like Linkerd's: the policy is a pure state machine ([`state`])
//! that takes the time as an argument and knows nothing of requests; the
//! [`Breakers`] registry holds one per peer; the tower layer ([`layer`]) only
//! asks for admission and reports outcomes.
//!
//! Written here rather than taken from a crate: `failsafe`, the usual
//! candidate, reads `std::time::Instant` itself (so it cannot run on tokio's
//! paused clock or a simulation), lets every request through while half-open
//! instead of one probe at a time, has no per-peer registry, and reports no
//! state transitions we could turn into metrics. The machine is ~200 lines.

use std::sync::Arc;
use std::time::Duration;

pub mod grpc;
pub mod layer;
pub mod registry;
pub mod state;
mod window;

pub use layer::{BreakerLayer, BreakerService};
pub use registry::{Breakers, Ticket};
pub use state::{Admission, Breaker, Decision};

/// Request extension naming the peer (destination pod) a request goes to;
/// the router sets it once it has picked the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer(pub Arc<str>);

/// Circuit-breaker settings of one service, from [`shardmesh_config::BreakerPolicy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Opens when failures reach this percentage of the window's requests...
    pub failure_percent: u32,
    /// ...provided the window holds at least this many requests.
    pub min_requests: u32,
    /// Length of the failure-ratio window.
    pub window: Duration,
    /// First open period.
    pub open: Duration,
    /// Longest open period (the doubling stops here).
    pub max_open: Duration,
    /// Random extra on each open period, as a fraction of it (0.1 = up to
    /// +10 %), so breakers of many callers do not probe in lockstep.
    pub jitter: f64,
}

// === impl BreakerSettings ===

impl Default for BreakerSettings {
    fn default() -> Self {
        Self::from(&shardmesh_config::BreakerPolicy::default())
    }
}

impl From<&shardmesh_config::BreakerPolicy> for BreakerSettings {
    fn from(p: &shardmesh_config::BreakerPolicy) -> Self {
        let open = Duration::from_millis(p.open_ms.max(1));
        Self {
            consecutive_failures: p.consecutive_failures.max(1),
            failure_percent: p.failure_percent.clamp(1, 100),
            min_requests: p.min_requests.max(1),
            window: Duration::from_secs(p.window_seconds.max(1).into()),
            open,
            max_open: Duration::from_millis(p.max_open_ms).max(open),
            jitter: 0.1,
        }
    }
}

impl From<shardmesh_config::BreakerPolicy> for BreakerSettings {
    fn from(p: shardmesh_config::BreakerPolicy) -> Self {
        Self::from(&p)
    }
}
