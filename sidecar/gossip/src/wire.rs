//! The versioned, size-bounded messages inside a seal (see [`crate::keyring`]).
//!
//! UDP plaintext: `[WIRE_VERSION][postcard(Wire)]`; TCP frames:
//! `[u32 big-endian length][sealed([WIRE_VERSION][postcard(PushPull)])]`.
//! postcard (serde) is used instead of a hand-written format: it reads from a
//! borrowed slice and never allocates more than the input can hold.

use std::net::SocketAddr;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::id::NodeId;
use crate::keyring::SEAL_OVERHEAD;
use crate::meta::MemberMeta;

/// Version of the plaintext layout; a member drops packets of other versions.
pub const WIRE_VERSION: u8 = 1;
/// Largest sealed UDP datagram we send or accept (fits a 1500-byte MTU).
pub const MAX_DATAGRAM: usize = 1400;
/// Largest plaintext inside a datagram.
pub const MAX_PLAIN: usize = MAX_DATAGRAM - SEAL_OVERHEAD;
/// Room the envelope around a foca packet needs (version, tags, lengths, buddy).
pub const ENVELOPE_ROOM: usize = 16;
/// Largest sealed TCP push-pull frame (about 10,000 members with metadata).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;
/// Largest application broadcast payload.
pub const MAX_APP_BROADCAST: usize = 512;

/// One UDP message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// A foca SWIM packet. `buddy` carries the incarnation at which the
    /// sender suspects the receiver (Lifeguard's buddy system), so a
    /// suspected member learns it on the next probe and refutes at once.
    Swim {
        /// Suspected incarnation of the receiver, if the sender suspects it.
        buddy: Option<u16>,
        /// The foca packet.
        packet: Vec<u8>,
    },
    /// Lifeguard nack: an intermediary asked to probe `target` got no ack
    /// in time. Tells the origin that the intermediary itself is reachable.
    Nack {
        /// Member that did not answer.
        target: NodeId,
    },
    /// A direct liveness check outside foca's probe cycle (ring watch and
    /// suspicion verification, see `core::watch`). `buddy` works as in
    /// [`Wire::Swim`].
    Check {
        /// Echoed in the answer.
        nonce: u64,
        /// Suspected incarnation of the receiver, if the sender suspects it.
        buddy: Option<u16>,
    },
    /// Answer to [`Wire::Check`], with the sender's identity and current
    /// incarnation: like a foca header, it refutes a stale suspicion
    /// directly, without waiting for gossip to carry the refutation.
    CheckAck {
        /// The check's nonce.
        nonce: u64,
        /// Who answers.
        id: NodeId,
        /// Its current incarnation.
        incarnation: u16,
    },
    /// Please check `target` directly and tell me ([`Wire::CheckReply`]).
    CheckReq {
        /// Member to check.
        target: NodeId,
        /// Echoed in the reply.
        nonce: u64,
    },
    /// Outcome of a [`Wire::CheckReq`]: an ack or, when unreached, a nack.
    CheckReply {
        /// Member checked.
        target: NodeId,
        /// The request's nonce.
        nonce: u64,
        /// The target's incarnation as it answered the helper; `None` when
        /// it did not answer in time. Refutes a stale suspicion at the
        /// origin even when the origin's own link to the target is down.
        incarnation: Option<u16>,
    },
}

/// A custom broadcast item carried inside foca packets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    /// A member's metadata, newest version wins.
    Meta(MetaRecord),
    /// An application message (e.g. a shard release).
    App {
        /// Sender.
        origin: NodeId,
        /// Per-sender sequence number; dedups retransmissions.
        seq: u64,
        /// Payload, at most [`MAX_APP_BROADCAST`] bytes.
        data: Vec<u8>,
    },
    /// `from` independently failed to reach `target` (Lifeguard confirmation).
    Confirm {
        /// Suspected member.
        target: NodeId,
        /// Incarnation suspected.
        incarnation: u16,
        /// Confirming member.
        from: SocketAddr,
    },
}

/// A member's metadata as gossiped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Whose metadata.
    pub id: NodeId,
    /// Grows with every change by the owner.
    pub version: u64,
    /// The member left gracefully (shown as `Left` once it is down).
    pub left: bool,
    /// The metadata itself.
    pub meta: MemberMeta,
}

/// Full state exchanged over TCP on join and periodically (anti-entropy).
///
/// Member states travel in full both ways. Metadata (the bulk) travels as
/// digests in the request; the answer carries only the records the requester
/// lacks, so a periodic exchange in a steady 1,000-member cluster moves
/// about 40 KB instead of 120 KB each way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPull {
    /// Sender.
    pub from: NodeId,
    /// Every member the sender knows, with its SWIM state.
    pub members: Vec<foca::Member<NodeId>>,
    /// Versions of every metadata record the sender knows.
    pub digests: Vec<MetaDigest>,
    /// Metadata records the receiver is missing (or every record, when bootstrapping).
    pub metas: Vec<MetaRecord>,
}

/// Which version of a member's metadata the sender has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaDigest {
    /// Member address.
    pub addr: SocketAddr,
    /// Member generation.
    pub generation: u64,
    /// Metadata version.
    pub version: u64,
}

/// Why a packet was dropped; the label of `shardmesh_gossip_bad_packets_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadPacket {
    /// Larger than [`MAX_DATAGRAM`] or [`MAX_FRAME`].
    Oversized,
    /// Shorter than its header.
    Truncated,
    /// Unknown seal or wire version.
    Version,
    /// Not authenticated by any key of the keyring.
    Auth,
    /// Authenticated but not decodable (or rejected by the SWIM core).
    Malformed,
}

// === impl BadPacket ===

impl BadPacket {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Truncated => "truncated",
            Self::Version => "version",
            Self::Auth => "auth",
            Self::Malformed => "malformed",
        }
    }
}

impl From<crate::keyring::OpenError> for BadPacket {
    fn from(e: crate::keyring::OpenError) -> Self {
        match e {
            crate::keyring::OpenError::Truncated => Self::Truncated,
            crate::keyring::OpenError::Version => Self::Version,
            crate::keyring::OpenError::Auth => Self::Auth,
        }
    }
}

/// Encodes a versioned message.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // postcard only fails on unsupported serde shapes, which our types avoid.
    if let Ok(body) = postcard::to_allocvec(msg) {
        out.extend_from_slice(&body);
    }
    out
}

/// Decodes a versioned message of at most `limit` bytes; trailing bytes are malformed.
pub fn decode<T: DeserializeOwned>(plain: &[u8], limit: usize) -> Result<T, BadPacket> {
    if plain.len() > limit {
        return Err(BadPacket::Oversized);
    }
    let (&version, body) = plain.split_first().ok_or(BadPacket::Truncated)?;
    if version != WIRE_VERSION {
        return Err(BadPacket::Version);
    }
    match postcard::take_from_bytes::<T>(body) {
        Ok((msg, [])) => Ok(msg),
        Ok(_) => Err(BadPacket::Malformed),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(BadPacket::Truncated),
        Err(_) => Err(BadPacket::Malformed),
    }
}

/// Decodes a broadcast item (no version byte: it rides inside a versioned packet).
pub fn decode_item(data: &[u8]) -> Result<Item, BadPacket> {
    match postcard::take_from_bytes::<Item>(data) {
        Ok((item, [])) => Ok(item),
        _ => Err(BadPacket::Malformed),
    }
}

/// Encodes a broadcast item.
pub fn encode_item(item: &Item) -> Vec<u8> {
    postcard::to_allocvec(item).unwrap_or_default()
}

#[cfg(test)]
mod tests;
