//! Settings of one gossip member, built from the sidecar config.

use std::net::SocketAddr;
use std::time::Duration;

use shardmesh_config::GossipTuning;

/// Where to find other members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Seeds {
    /// Nobody to contact (the first member of a cluster, or tests).
    #[default]
    None,
    /// Static `host:port` list (local mode).
    Static(Vec<String>),
    /// `name:port` of the headless gossip Service, re-resolved until joined.
    Dns(String),
}

/// Protocol timing, the part the sans-IO core needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Time between probes.
    pub probe_interval: Duration,
    /// Wait for a direct ack before indirect probes.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: u32,
    /// Scales the suspicion timeout.
    pub suspicion_multiplier: u32,
    /// Scales the retransmit limit λ·log(N).
    pub retransmit_multiplier: u32,
    /// Period of full-state push-pull (scaled up for large clusters).
    pub push_pull_interval: Duration,
    /// Lifeguard on (default) or plain foca (the benchmark baseline).
    pub lifeguard: bool,
    /// How long dead members are remembered (tombstones).
    pub tombstone: Duration,
}

/// Everything [`crate::Gossip::start`] needs besides metadata and keys.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// UDP and TCP listen address (port 0 picks one; tests).
    pub listen: SocketAddr,
    /// Address other members should use, when it differs from `listen`
    /// (e.g. listen on 0.0.0.0, advertise the pod IP).
    pub advertise: Option<SocketAddr>,
    /// Seeds to join through.
    pub seeds: Seeds,
    /// Protocol timing.
    pub timing: Timing,
    /// Run without a keyring. Only for development: every packet is still
    /// sealed, with a fixed well-known key, so it is NOT secret.
    pub insecure_dev_mode: bool,
    /// First delay between join attempts; doubles up to `join_backoff_max`.
    pub join_backoff: Duration,
    /// Longest delay between join attempts.
    pub join_backoff_max: Duration,
    /// Read/write timeout of a TCP push-pull exchange.
    pub tcp_timeout: Duration,
    /// Mutual TLS around push-pull (the mesh's certificates); `None`: plain
    /// TCP (the frames are still sealed with the keyring).
    pub tls: Option<crate::pushpull::GossipTls>,
}

// === impl Timing ===

impl Timing {
    /// memberlist's LAN profile, as DESIGN.md asks.
    pub fn lan() -> Self {
        Self::from_tuning(&GossipTuning::default())
    }

    /// Timing from the sidecar config.
    pub fn from_tuning(t: &GossipTuning) -> Self {
        Self {
            probe_interval: Duration::from_millis(t.probe_interval_ms.max(1)),
            probe_timeout: Duration::from_millis(t.probe_timeout_ms.max(1)),
            indirect_probes: t.indirect_probes,
            suspicion_multiplier: t.suspicion_multiplier.max(1),
            retransmit_multiplier: t.retransmit_multiplier.max(1),
            push_pull_interval: Duration::from_millis(t.push_pull_interval_ms.max(1)),
            lifeguard: true,
            tombstone: Duration::from_secs(3600),
        }
    }
}

// === impl GossipSettings ===

impl GossipSettings {
    /// Settings from the sidecar config, a listen address and seeds.
    pub fn new(tuning: &GossipTuning, listen: SocketAddr, seeds: Seeds) -> Self {
        Self {
            listen,
            advertise: None,
            seeds,
            timing: Timing::from_tuning(tuning),
            insecure_dev_mode: false,
            join_backoff: Duration::from_millis(200),
            join_backoff_max: Duration::from_secs(10),
            tcp_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Seeds from the config's `membership.seeds` (DNS wins over the static list).
    pub fn seeds_from(config: &shardmesh_config::SeedConfig) -> Seeds {
        match (&config.dns, config.static_seeds.is_empty()) {
            (Some(dns), _) => Seeds::Dns(dns.clone()),
            (None, false) => Seeds::Static(config.static_seeds.clone()),
            (None, true) => Seeds::None,
        }
    }
}
