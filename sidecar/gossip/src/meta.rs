//! What a member says about itself (spread by gossip) and what the local
//! member believes about everyone (the view handed to the sidecar).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest string field in [`MemberMeta`]; pod names and addresses are short.
pub const MAX_META_STRING: usize = 253;
/// Most tags a member may carry; tags hold small facts such as a shard count.
pub const MAX_META_TAGS: usize = 16;
/// Longest tag key or value.
pub const MAX_TAG_BYTES: usize = 128;
/// Largest encoded metadata; it must fit one UDP packet with room to spare.
pub const MAX_META_BYTES: usize = 900;

/// The lifecycle state a sidecar announces for its pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Started, not yet serving (shards not acquired).
    #[default]
    Joining,
    /// Serving traffic.
    Serving,
    /// Draining before shutdown.
    Leaving,
}

/// What a member says about itself; spread by gossip, re-announced on change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    /// The ShardedService this pod belongs to.
    pub service: String,
    /// Pod name; unique in the mesh and the sort key of the view.
    pub pod: String,
    /// `host:port` other sidecars call this pod through.
    pub inbound: String,
    /// `host:port` of the admin listener.
    pub admin: String,
    /// Topology zone, when known.
    pub zone: Option<String>,
    /// Lifecycle state, set by the sidecar.
    pub state: MemberStatus,
    /// Small bounded facts (e.g. shard count) other members route by.
    pub tags: BTreeMap<String, String>,
}

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// A string field is too long.
    #[error("member metadata field {0} is longer than {MAX_META_STRING} bytes")]
    FieldTooLong(&'static str),
    /// Too many tags or a tag too long.
    #[error(
        "member metadata has more than {MAX_META_TAGS} tags or a tag over {MAX_TAG_BYTES} bytes"
    )]
    Tags,
    /// The pod name is empty.
    #[error("member metadata needs a pod name")]
    NoPod,
    /// The whole record is too large to gossip.
    #[error("member metadata encodes to more than {MAX_META_BYTES} bytes")]
    TooLarge,
}

/// How the local member judges another member's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Health {
    /// Answering probes.
    Alive,
    /// Missed a probe; may still refute. Keyless traffic avoids it.
    Suspect,
    /// Declared dead; leaves the routing table at once.
    Dead,
    /// Left gracefully.
    Left,
}

/// One member as the local member sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// What the member announced.
    pub meta: MemberMeta,
    /// Grows with every restart and every refuted suspicion:
    /// `start generation << 16 | SWIM incarnation`.
    pub incarnation: u64,
    /// Alive, suspect, dead or left.
    pub health: Health,
    /// Gossip address of the member.
    pub gossip_addr: std::net::SocketAddr,
}

impl Member {
    /// The member's start generation: it changes when the process restarts
    /// and when the cluster declared the member dead and it rejoined.
    pub fn generation(&self) -> u64 {
        self.incarnation >> 16
    }
}

/// The local member's view of the cluster, published on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// Every known member (including the local one and tombstones), sorted by pod.
    pub members: Vec<Member>,
    /// Pod name of the local member.
    pub local: String,
}

// === impl MemberMeta ===

impl MemberMeta {
    /// Checks the bounds that keep metadata small enough to gossip.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.pod.is_empty() {
            return Err(MetaError::NoPod);
        }
        let fields = [
            ("service", self.service.as_str()),
            ("pod", self.pod.as_str()),
            ("inbound", self.inbound.as_str()),
            ("admin", self.admin.as_str()),
            ("zone", self.zone.as_deref().unwrap_or("")),
        ];
        for (name, value) in fields {
            if value.len() > MAX_META_STRING {
                return Err(MetaError::FieldTooLong(name));
            }
        }
        if self.tags.len() > MAX_META_TAGS
            || self
                .tags
                .iter()
                .any(|(k, v)| k.len() > MAX_TAG_BYTES || v.len() > MAX_TAG_BYTES)
        {
            return Err(MetaError::Tags);
        }
        let size = postcard::to_allocvec(self)
            .map_err(|_| MetaError::TooLarge)?
            .len();
        if size > MAX_META_BYTES {
            return Err(MetaError::TooLarge);
        }
        Ok(())
    }
}

// === impl MembershipView ===

impl MembershipView {
    /// The member with this pod name, if known.
    pub fn get(&self, pod: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.meta.pod.as_str().cmp(pod))
            .ok()
            .and_then(|i| self.members.get(i))
    }

    /// Members that are alive (not suspect, dead or left).
    pub fn alive(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.health == Health::Alive)
    }
}
