//! The SWIM identity of a member: its gossip address plus a start generation,
//! so a restarted member wins over its previous life at the same address.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Identity handed to foca. Kept lean (it travels in every packet header);
/// metadata travels separately as versioned broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// UDP and TCP gossip address.
    pub addr: SocketAddr,
    /// Grows on every start (wall-clock millis at start) and on every
    /// automatic rejoin after being declared down.
    pub generation: u64,
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    /// A member declared down (wrongly, or after a partition) comes back at
    /// once under the next generation instead of staying defunct.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
