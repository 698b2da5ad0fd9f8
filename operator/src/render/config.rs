//! The sidecar config of a ShardedService, built with the sidecar's own type
//! (one source of truth). The local runner reuses [`render_sidecar_config`]
//! with static seeds instead of DNS.

use shardmesh_config::{
    AppConfig, IssuerConfig, LimitsConfig, LogConfig, MembershipConfig, PodConfig, SeedConfig,
    ServiceConfig, SidecarConfig, TlsConfig,
};

use super::{MeshTls, GOSSIP_SERVICE};
use crate::crd::ShardedService;

/// Where the gossip keyring is mounted in a cluster pod.
pub const KEYRING_FILE: &str = "/etc/shardmesh/gossip/keyring";
/// Where the trust anchor ConfigMap is mounted in a cluster pod.
pub const CA_FILE: &str = "/etc/shardmesh/ca/ca.crt";
/// Where the projected ServiceAccount token (audience: the identity endpoint) is mounted.
pub const TOKEN_FILE: &str = "/var/run/secrets/shardmesh/token";
/// Gossip port of every sidecar.
pub const GOSSIP_PORT: u16 = 7946;

/// The inputs of a sidecar config that do not come from the ShardedService
/// itself and are the same for every pod of it.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshInputs {
    /// The shard count in force (see [`super::resolved_shards`]).
    pub shards: u32,
    /// How members find each other.
    pub seeds: SeedConfig,
    /// Gossip on (cluster, local mesh) or off (static members only).
    pub gossip_enabled: bool,
    /// The keyring file, when gossip is encrypted.
    pub keyring_file: Option<String>,
    /// Other services this sidecar should know (local mode lists them all).
    pub peers: Vec<ServiceConfig>,
    /// Mutual TLS; the spec's `security.allowedIdentities` is added to it.
    pub tls: Option<TlsConfig>,
}

impl MeshInputs {
    /// Inputs for a pod in `namespace` of a cluster: DNS seeds from the
    /// headless gossip Service and the keyring from the mounted Secret.
    pub fn cluster(namespace: &str, shards: u32) -> Self {
        Self {
            shards,
            seeds: SeedConfig {
                dns: Some(format!(
                    "{GOSSIP_SERVICE}.{namespace}.svc.cluster.local:{GOSSIP_PORT}"
                )),
                static_seeds: Vec::new(),
            },
            gossip_enabled: true,
            keyring_file: Some(KEYRING_FILE.to_string()),
            peers: Vec::new(),
            tls: None,
        }
    }

    /// Adds mutual TLS in issuer mode: the sidecar obtains its certificate
    /// from the identity endpoint with the projected token, and trusts the
    /// mounted CA ConfigMap. `None` leaves the inputs as they are.
    pub fn with_tls(mut self, tls: Option<&MeshTls>) -> Self {
        if let Some(tls) = tls {
            self.tls = Some(TlsConfig {
                trust_domain: tls.trust_domain.clone(),
                ca_file: CA_FILE.to_string(),
                cert_file: None,
                key_file: None,
                issuer: Some(IssuerConfig {
                    url: tls.issuer_url.clone(),
                    token_file: TOKEN_FILE.to_string(),
                }),
                allowed_identities: Vec::new(),
                handshake_timeout_ms: shardmesh_config::tls::DEFAULT_HANDSHAKE_TIMEOUT_MS,
            });
        }
        self
    }
}

/// The service entry of `svc` as every sidecar routes to it.
pub fn service_config(svc: &ShardedService, shards: u32) -> ServiceConfig {
    ServiceConfig {
        name: svc.metadata.name.clone().unwrap_or_default(),
        shards,
        routing: svc.spec.routing.clone(),
        resilience: svc.spec.resilience.clone(),
        members: Vec::new(),
    }
}

/// Renders the sidecar config shared by every pod of `svc`. Per-pod facts
/// (pod name, advertise host) are left empty: the downward API supplies them
/// as `SHARDMESH_POD_NAME` and `SHARDMESH_ADVERTISE_HOST`.
pub fn render_sidecar_config(svc: &ShardedService, inputs: &MeshInputs) -> SidecarConfig {
    let own = service_config(svc, inputs.shards);
    let mut gossip = svc.spec.gossip.clone();
    gossip.enabled = inputs.gossip_enabled;
    gossip.keyring_file = inputs.keyring_file.clone();
    let mut log = LogConfig::default();
    if let Some(level) = svc.spec.sidecar.as_ref().and_then(|s| s.log_level.clone()) {
        log.level = level;
    }
    let mut limits = LimitsConfig::default();
    if let Some(max) = svc
        .spec
        .sidecar
        .as_ref()
        .and_then(|s| s.max_request_body_bytes)
    {
        limits.max_request_body_bytes = max;
    }
    let peers = inputs.peers.iter().filter(|p| p.name != own.name).cloned();
    let services = std::iter::once(own.clone()).chain(peers).collect();
    let tls = inputs.tls.clone().map(|mut tls| {
        if let Some(security) = &svc.spec.security {
            tls.allowed_identities = security.allowed_identities.clone();
        }
        tls
    });
    SidecarConfig {
        pod: PodConfig {
            service: svc.metadata.name.clone().unwrap_or_default(),
            ..PodConfig::default()
        },
        app: AppConfig {
            address: format!("127.0.0.1:{}", svc.spec.app_port),
        },
        services,
        membership: MembershipConfig {
            seeds: inputs.seeds.clone(),
            gossip,
        },
        log,
        limits,
        tls,
        tracing: svc.spec.sidecar.as_ref().and_then(|s| s.tracing.clone()),
        ..SidecarConfig::default()
    }
}
