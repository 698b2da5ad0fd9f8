//! Addressing: every pod gets its own IP and the cluster's default ports on
//! it, so a local pod looks like a cluster pod (`127.0.0.10:7400` is pod 0's
//! outbound listener, `:7401` inbound, `:7402` admin, `:7946` gossip, and the
//! app listens on the manifest's `appPort` on the same IP).
//!
//! - Loopback (default): pod `i` of the `s`-th service is `127.B.s.(10+i)`,
//!   `B` = `--loopback-block` (default 0). Linux routes all of 127/8 to `lo`,
//!   so no set-up is needed, and two runs with different blocks never clash.
//! - Network namespaces (tests, root only): pod `i` of service `s` runs in the
//!   namespace `PREFIX-s-i`, which the caller created, at `10.B.s.(10+i)`.

use std::net::Ipv4Addr;

/// Outbound listener port (the app calls other services through it).
pub const OUTBOUND_PORT: u16 = 7400;
/// Inbound listener port (other sidecars call this pod through it).
pub const INBOUND_PORT: u16 = 7401;
/// Admin listener port.
pub const ADMIN_PORT: u16 = 7402;
/// Gossip port (UDP and TCP).
pub const GOSSIP_PORT: u16 = 7946;
/// Last octet of ordinal 0.
const FIRST_HOST: u8 = 10;
/// Most pods per service: the last octet must stay below 255.
pub const MAX_REPLICAS: u32 = (255 - FIRST_HOST as u32) - 1;
/// Most services in one mesh: one third octet each.
pub const MAX_SERVICES: usize = 256;

/// Where pods live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// One loopback IP per pod: `127.block.service.(10+ordinal)`.
    Loopback {
        /// Second octet.
        block: u8,
    },
    /// One network namespace per pod, created beforehand by the caller.
    Netns {
        /// Namespace name prefix: pod `i` of service `s` is in `PREFIX-s-i`.
        prefix: String,
        /// Second octet of `10.block.service.(10+ordinal)`.
        block: u8,
    },
}

/// A pod's place on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNet {
    /// The pod IP; every listener binds to it.
    pub ip: Ipv4Addr,
    /// The network namespace to run the pod's processes in, if any.
    pub netns: Option<String>,
}

impl PodNet {
    /// `ip:port`.
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }
}

impl Network {
    /// The place of pod `ordinal` of the `service`-th service (both 0-based).
    /// Callers keep `service < MAX_SERVICES` and `ordinal <= MAX_REPLICAS`.
    pub fn pod(&self, service: usize, ordinal: u32) -> PodNet {
        let s = u8::try_from(service).unwrap_or(u8::MAX);
        let host = u8::try_from(ordinal + u32::from(FIRST_HOST)).unwrap_or(u8::MAX);
        match self {
            Network::Loopback { block } => PodNet {
                ip: Ipv4Addr::new(127, *block, s, host),
                netns: None,
            },
            Network::Netns { prefix, block } => PodNet {
                ip: Ipv4Addr::new(10, *block, s, host),
                netns: Some(format!("{prefix}-{service}-{ordinal}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_pods_get_one_ip_each() {
        let net = Network::Loopback { block: 0 };
        assert_eq!(net.pod(0, 0).addr(OUTBOUND_PORT), "127.0.0.10:7400");
        assert_eq!(net.pod(1, 2).ip, Ipv4Addr::new(127, 0, 1, 12));
        let other = Network::Loopback { block: 7 };
        assert_eq!(other.pod(0, 1).ip, Ipv4Addr::new(127, 7, 0, 11));
    }

    #[test]
    fn netns_pods_name_their_namespace() {
        let net = Network::Netns {
            prefix: "smt".into(),
            block: 9,
        };
        let pod = net.pod(0, 2);
        assert_eq!(pod.ip, Ipv4Addr::new(10, 9, 0, 12));
        assert_eq!(pod.netns.as_deref(), Some("smt-0-2"));
    }
}
