//! Hooks for the metrics DESIGN.md names; the sidecar implements them with
//! prometheus so this crate stays free of it. Every method has an empty default.

use crate::wire::BadPacket;

/// How a probe ended, the `result` label of `shardmesh_gossip_probes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Direct ack.
    Ack,
    /// No direct ack, but an indirect one through another member.
    IndirectAck,
    /// No ack at all; the member is now suspect.
    Failed,
}

/// Member counts by health, for `shardmesh_members{state}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// Alive members, the local one included.
    pub alive: usize,
    /// Suspect members.
    pub suspect: usize,
    /// Dead members still remembered (tombstones).
    pub dead: usize,
    /// Members that left gracefully.
    pub left: usize,
}

impl ProbeResult {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::IndirectAck => "indirect_ack",
            Self::Failed => "failed",
        }
    }
}

/// Receives gossip events for metrics. Called from the gossip task: keep it cheap.
pub trait GossipObserver: Send + Sync {
    /// Member counts changed.
    fn members(&self, _counts: HealthCounts) {}
    /// A probe ended.
    fn probe(&self, _result: ProbeResult) {}
    /// This member started suspecting another.
    fn suspicion(&self) {}
    /// This member refuted a suspicion about itself.
    fn refutation(&self) {}
    /// A packet or frame was dropped.
    fn bad_packet(&self, _reason: BadPacket) {}
    /// Bytes put on the wire (UDP datagrams and TCP frames, sealed).
    fn bytes_sent(&self, _n: usize) {}
    /// Bytes read from the wire.
    fn bytes_received(&self, _n: usize) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl GossipObserver for NoopObserver {}
