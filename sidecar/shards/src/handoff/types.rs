//! The vocabulary of the handoff state machine: its settings, what it asks
//! the sidecar to do, and what it answers to a routing query.

use std::time::{Duration, Instant};

use crate::{MemberId, ReleaseNotice};

/// Largest shard count a table accepts (the config crate's limit too).
pub const MAX_SHARDS: u32 = 65_536;

/// Why a [`HandoffConfig`] or member id cannot make a shard table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Shard count outside `1..=MAX_SHARDS`.
    #[error("shards must be between 1 and {MAX_SHARDS}, got {0}")]
    Shards(u32),
    /// Service name empty or longer than 63 bytes.
    #[error("service name must be 1 to 63 bytes")]
    Service,
    /// Member id empty or longer than 253 bytes.
    #[error("member id must be 1 to 253 bytes")]
    Member,
}

/// Settings of one service's shard table; plain values, validated by the
/// config crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffConfig {
    /// The service whose shards this member may own.
    pub service: String,
    /// Number of shards of the service (fixed).
    pub shards: u32,
    /// How long requests may wait for a shard being acquired before they
    /// are answered `no-owner` (the handoff timeout).
    pub hold_timeout: Duration,
    /// How many requests may wait per shard being acquired.
    pub max_held: u32,
    /// How long to wait before calling a failed app callback again.
    pub retry_after: Duration,
    /// How long a dead member keeps counting for keep-majority, and how long
    /// a lone member waits before it counts itself a majority.
    pub stable_after: Duration,
    /// How long a leaving member keeps serving its shards while waiting for
    /// every other member to settle on the view without it (so they route
    /// to the new owners, who hold requests until the release) before it
    /// releases them anyway.
    pub leave_wait: Duration,
    /// How long a member declared dead still counts as possibly holding its
    /// shards (Akka Cluster Sharding's `down-removal-margin`). A dead
    /// verdict can be false: after a partition heals, the side that was cut
    /// off spreads the verdicts it reached about the other side, whose
    /// members were serving all along. Such a member learns it was declared
    /// dead, rejoins under a new generation and releases its shards, which
    /// takes about one gossip round trip; the margin leaves it that time, so
    /// a new owner waits for its release notice instead of serving beside
    /// it. The clock only runs while this member reaches a majority: verdicts
    /// reached on the small side of a partition never free a shard.
    pub dead_owner_margin: Duration,
    /// Wall-clock time when the table starts, in microseconds since the Unix
    /// epoch (0: off). New epochs are at least this plus the time since, so
    /// they keep growing even after every member restarted and the epochs
    /// gossiped so far are forgotten (assumes clocks within milliseconds).
    pub epoch_floor: u64,
}

impl HandoffConfig {
    /// Defaults for `service` with `shards` shards: hold 5 s, 100 held
    /// requests per shard, retry callbacks after 1 s, stable after 10 s,
    /// leave wait 3 s, dead-owner margin 2 s, no epoch floor (set it from the wall clock at start).
    pub fn new(service: impl Into<String>, shards: u32) -> Self {
        Self {
            service: service.into(),
            shards,
            hold_timeout: Duration::from_secs(5),
            max_held: 100,
            retry_after: Duration::from_secs(1),
            stable_after: Duration::from_secs(10),
            leave_wait: Duration::from_secs(3),
            dead_owner_margin: Duration::from_secs(2),
            epoch_floor: 0,
        }
    }
}

/// Where a request for a shard should go, as this member sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This member serves the shard; pass the epoch to the app.
    Local {
        /// The ownership epoch, for the app to fence stale writers.
        epoch: u64,
    },
    /// The shard is being acquired here: queue the request until
    /// [`Action::ServeHeld`] or [`Action::RejectHeld`] for the shard.
    Hold,
    /// Another member owns it: forward once (a forwarded request that would
    /// be forwarded again must be answered `no-owner`: hop limit 1).
    Forward(MemberId),
    /// Nobody can serve it now: answer `no-owner` (503).
    NoOwner,
}

/// An effect the sidecar must carry out for the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Call `POST /shardmesh/shards/{shard}/acquire` with the epoch, then
    /// report the outcome with `callback_done`.
    CallAcquire {
        /// Shard to acquire.
        shard: u32,
        /// Its new epoch, larger than any epoch seen for it.
        epoch: u64,
    },
    /// Call `POST /shardmesh/shards/{shard}/release`, then report the
    /// outcome with `callback_done`.
    CallRelease {
        /// Shard to release.
        shard: u32,
        /// The epoch it was held at.
        epoch: u64,
    },
    /// New requests for the shard no longer reach the app; call `drained`
    /// once none of its requests is in flight (at once if none is).
    Drain {
        /// Shard to drain.
        shard: u32,
    },
    /// Gossip this release notice ([`ReleaseNotice::encode`]).
    Broadcast(ReleaseNotice),
    /// Serve the requests held for the shard locally, with this epoch.
    ServeHeld {
        /// Shard now served here.
        shard: u32,
        /// Its epoch.
        epoch: u64,
    },
    /// Answer the requests held for the shard with `no-owner`.
    RejectHeld {
        /// Shard whose held requests are refused.
        shard: u32,
    },
    /// The shard is now served here (for `shard_handoffs_total` and
    /// `shard_handoff_duration_seconds`).
    Acquired {
        /// Shard acquired.
        shard: u32,
        /// Its epoch.
        epoch: u64,
        /// From the start of the acquisition to serving.
        took: Duration,
    },
    /// The shard's term here is void (the app fenced it, a newer owner
    /// released it back, or this member was declared dead): it is being
    /// acquired again, and new requests are held meanwhile.
    TermLost {
        /// Shard whose term ended.
        shard: u32,
    },
    /// The shard is no longer held here.
    Released {
        /// Shard released.
        shard: u32,
        /// The epoch it was held at.
        epoch: u64,
    },
}

/// Which app callback finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    /// `POST /shardmesh/shards/{id}/acquire`.
    Acquire,
    /// `POST /shardmesh/shards/{id}/release`.
    Release,
}

/// How an app callback ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done.
    Ok,
    /// 404: the app has no callbacks (stateless); counts as done.
    NotImplemented,
    /// Any other answer or no answer: retried after `retry_after`.
    Failed,
}

/// A shard's state on this member, for `/debug/shards` and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardState {
    /// Another member owns it (or nobody).
    NotOwned,
    /// Owned here in the current view, not served yet; requests are held.
    Acquiring {
        /// When the acquisition started.
        since: Instant,
        /// The epoch once the app acquire was called.
        epoch: Option<u64>,
    },
    /// Served here.
    Serving {
        /// Its epoch.
        epoch: u64,
    },
    /// Being given up: draining, releasing in the app, then gossiping.
    Releasing {
        /// The epoch it was held at.
        epoch: u64,
    },
}

impl ShardState {
    /// Short name for `/debug/shards`: `serving`, `acquiring`, `releasing`, `not-owned`.
    pub fn name(&self) -> &'static str {
        match self {
            ShardState::NotOwned => "not-owned",
            ShardState::Acquiring { .. } => "acquiring",
            ShardState::Serving { .. } => "serving",
            ShardState::Releasing { .. } => "releasing",
        }
    }
}
