//! The membership input of the sharding core: peers of one service.
//!
//! Plain data, filled by the sidecar from the gossip view, so this crate
//! stays independent of the gossip crate and can be simulated.

use xxhash_rust::xxh3::Xxh3;

use crate::MemberId;

/// Gossip tag carrying a member's highest ownership epoch (decimal u64).
pub const EPOCH_TAG: &str = "shards.epoch";

/// Gossip tag carrying the view id a member has settled on (16 hex digits),
/// absent while it still holds shards it no longer owns.
pub const SETTLED_TAG: &str = "shards.settled";

/// A member's health as failure detection reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Answering probes.
    Alive,
    /// Missed probes, not yet declared dead: keeps its shards.
    Suspect,
    /// Declared dead: loses its shards; the new owner acquires at once.
    Dead,
    /// Left gracefully (after releasing its shards).
    Left,
    /// Shutting down gracefully (gossip state `leaving`): owns no shards in
    /// the assignment, so the others route to the new owners, but is still
    /// running and may still hold shards until it gossips their release.
    Leaving,
}

impl Health {
    /// Whether the member owns shards in the assignment (alive or suspect).
    pub fn owns_shards(self) -> bool {
        matches!(self, Health::Alive | Health::Suspect)
    }

    /// Whether the member may still hold shards at the app (an owner, or a
    /// leaving member that has not released everything yet): a new owner
    /// waits for its release notice or the barrier.
    pub fn may_hold_shards(self) -> bool {
        matches!(self, Health::Alive | Health::Suspect | Health::Leaving)
    }
}

/// One member of the local member's service, as gossip last described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The member's id (pod name).
    pub id: MemberId,
    /// Its health.
    pub health: Health,
    /// Its [`EPOCH_TAG`]: the highest epoch it has used or seen (0 if none).
    pub epoch: u64,
    /// Its [`SETTLED_TAG`]: the view it has settled on, if any.
    pub settled: Option<u64>,
}

impl Peer {
    /// A peer with no tags yet, e.g. for tests and fresh members.
    pub fn new(id: impl Into<MemberId>, health: Health) -> Self {
        Self {
            id: id.into(),
            health,
            epoch: 0,
            settled: None,
        }
    }

    /// Reads [`EPOCH_TAG`] and [`SETTLED_TAG`] from a member's tag map;
    /// malformed values read as absent (a bad tag never panics).
    pub fn with_tags<'a>(mut self, tag: impl Fn(&str) -> Option<&'a str>) -> Self {
        self.epoch = tag(EPOCH_TAG).and_then(|v| v.parse().ok()).unwrap_or(0);
        self.settled = tag(SETTLED_TAG).and_then(|v| u64::from_str_radix(v, 16).ok());
        self
    }
}

/// Identifies a set of shard-owning members, so members can tell whether
/// they computed ownership from the same view.
///
/// XXH3-64 of the sorted ids, each followed by a 0 byte.
pub fn view_id(owners: &[MemberId]) -> u64 {
    let mut h = Xxh3::new();
    for m in owners {
        h.update(m.as_str().as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// Formats a view id as [`SETTLED_TAG`] expects it.
pub fn format_view_id(view: u64) -> String {
    format!("{view:016x}")
}

#[cfg(test)]
mod tests;
