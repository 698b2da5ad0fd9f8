//! Gossip membership → routing table. Starts the gossip member with this
//! pod's metadata, and republishes the routing table on every view change:
//! a member declared dead or left leaves the table at once, suspects stay
//! (they keep their shards; keyless traffic avoids them), and a member
//! announcing `leaving` stays reachable but owns no shards (keyed traffic
//! goes to the new owners, keyless traffic avoids it).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use shardmesh_config::{PathTemplate, RoutingConfig, ServiceConfig, SidecarConfig};
use shardmesh_gossip::{
    BadPacket, GossipHandle, GossipObserver, Health, HealthCounts, MemberMeta, MemberStatus,
    MembershipView, ProbeResult,
};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::routing::table::{Endpoint, EndpointHealth, RoutingTable, ServiceRoutes};

/// Gossip tag carrying a member's shard count, so sidecars of other services
/// can route to it without its config.
pub const TAG_SHARDS: &str = "shards";
/// Gossip tag carrying the service's key path template.
pub const TAG_KEY_FROM_PATH: &str = "keyFromPath";
/// Gossip tag carrying the service's key header when not the default.
pub const TAG_KEY_HEADER: &str = "keyHeader";

/// The address other pods reach a listener bound at `bound` through: the
/// configured advertise host, else the bound IP when it is specific.
pub fn advertised(config: &SidecarConfig, bound: SocketAddr) -> Result<SocketAddr, String> {
    if let Some(host) = &config.pod.advertise_host {
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("pod.advertiseHost {host:?} is not an IP address"))?;
        return Ok(SocketAddr::new(ip, bound.port()));
    }
    if bound.ip().is_unspecified() {
        return Err(format!(
            "listener {bound} is unspecified: set pod.advertiseHost (SHARDMESH_ADVERTISE_HOST) to the pod IP"
        ));
    }
    Ok(bound)
}

/// What this pod announces about itself.
pub fn local_meta(config: &SidecarConfig, inbound: SocketAddr, admin: SocketAddr) -> MemberMeta {
    let mut tags = BTreeMap::new();
    if let Some(own) = config.service(&config.pod.service) {
        tags.insert(TAG_SHARDS.to_string(), own.shards.to_string());
        if let Some(t) = &own.routing.key_from_path {
            tags.insert(TAG_KEY_FROM_PATH.to_string(), t.clone());
        }
        if own.routing.key_header != RoutingConfig::default().key_header {
            tags.insert(TAG_KEY_HEADER.to_string(), own.routing.key_header.clone());
        }
    }
    MemberMeta {
        service: config.pod.service.clone(),
        pod: config.pod.name.clone(),
        inbound: inbound.to_string(),
        admin: admin.to_string(),
        zone: config.pod.zone.clone(),
        state: MemberStatus::Joining,
        tags,
    }
}

/// Builds the routing table from a membership view. Services come from the
/// config (with their policies) and from members' tags (default policy).
pub fn table_from_view(
    config: &SidecarConfig,
    view: &MembershipView,
    version: u64,
) -> RoutingTable {
    let mut services: BTreeMap<String, ServiceRoutes> = BTreeMap::new();
    for svc in &config.services {
        if let Ok(routes) = ServiceRoutes::empty(svc) {
            services.insert(svc.name.clone(), routes);
        }
    }
    for m in &view.members {
        if services.contains_key(&m.meta.service) {
            continue;
        }
        if let Some(svc) = service_from_tags(&m.meta) {
            if let Ok(routes) = ServiceRoutes::empty(&svc) {
                services.insert(svc.name.clone(), routes);
            }
        }
    }
    for routes in services.values_mut() {
        let mut endpoints: Vec<(Endpoint, bool)> = view
            .members
            .iter()
            .filter(|m| *m.meta.service == *routes.name)
            .filter_map(|m| {
                let leaving = m.meta.state == MemberStatus::Leaving;
                let health = match m.health {
                    // Handing its shards off: still reachable (it serves
                    // or forwards what callers with an older view send),
                    // but keyless traffic avoids it like a suspect.
                    Health::Alive | Health::Suspect if leaving => EndpointHealth::Suspect,
                    Health::Alive => EndpointHealth::Alive,
                    Health::Suspect => EndpointHealth::Suspect,
                    Health::Dead | Health::Left => return None,
                };
                let e = Endpoint {
                    name: Arc::from(m.meta.pod.as_str()),
                    inbound: Arc::from(m.meta.inbound.as_str()),
                    health,
                    generation: m.generation(),
                };
                Some((e, leaving))
            })
            .collect();
        endpoints.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        // Shards go to the members that are not leaving: the same owners
        // the shard managers compute (`shardmesh_shards::Health::Leaving`).
        let owners: Vec<Arc<str>> = endpoints
            .iter()
            .filter(|(_, leaving)| !leaving)
            .map(|(e, _)| e.name.clone())
            .collect();
        routes.endpoints = endpoints.into_iter().map(|(e, _)| e).collect();
        let names: Vec<&str> = owners.iter().map(|n| &**n).collect();
        let owners = crate::routing::ownership::assign(routes.shards, &names);
        let owners: Vec<Option<String>> = owners.iter().map(|o| o.map(String::from)).collect();
        let owners: Vec<Option<&str>> = owners.iter().map(|o| o.as_deref()).collect();
        routes.set_owners_by_name(&owners, 1);
    }
    RoutingTable {
        local: Arc::from(config.pod.name.as_str()),
        services: services.into_iter().collect(),
        version,
    }
}

/// A service config reconstructed from a member's gossip tags, for services
/// this sidecar has no config for. Bad tags mean no route, never a panic.
fn service_from_tags(meta: &MemberMeta) -> Option<ServiceConfig> {
    let shards: u32 = meta.tags.get(TAG_SHARDS)?.parse().ok()?;
    if shards == 0 || shards > shardmesh_config::validate::MAX_SHARDS {
        return None;
    }
    let key_from_path = meta
        .tags
        .get(TAG_KEY_FROM_PATH)
        .filter(|t| PathTemplate::parse(t).is_ok())
        .cloned();
    let key_header = meta
        .tags
        .get(TAG_KEY_HEADER)
        .filter(|h| http::HeaderName::from_bytes(h.as_bytes()).is_ok())
        .cloned()
        .unwrap_or_else(|| RoutingConfig::default().key_header);
    Some(ServiceConfig {
        name: meta.service.clone(),
        shards,
        routing: RoutingConfig {
            key_header,
            key_from_path,
        },
        resilience: Default::default(),
        members: Vec::new(),
    })
}

/// This pod's gossip member and the metadata it announces. The lifecycle
/// state and the shard tags are changed by different parts of the sidecar,
/// so the current metadata lives here and every change re-announces all of it.
pub struct LocalMember {
    handle: Arc<GossipHandle>,
    meta: tokio::sync::Mutex<MemberMeta>,
}

impl LocalMember {
    /// Wraps a started gossip member announcing `meta`.
    pub fn new(handle: Arc<GossipHandle>, meta: MemberMeta) -> Self {
        Self {
            handle,
            meta: tokio::sync::Mutex::new(meta),
        }
    }

    /// The gossip handle.
    pub fn handle(&self) -> &Arc<GossipHandle> {
        &self.handle
    }

    /// Announces a lifecycle state.
    pub async fn set_state(&self, state: MemberStatus) -> Result<(), shardmesh_gossip::Error> {
        let mut meta = self.meta.lock().await;
        if meta.state == state {
            return Ok(());
        }
        meta.state = state;
        self.handle.update_meta(meta.clone()).await
    }

    /// Changes tags and announces them.
    pub async fn update_tags(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), shardmesh_gossip::Error> {
        let mut meta = self.meta.lock().await;
        f(&mut meta.tags);
        self.handle.update_meta(meta.clone()).await
    }
}

/// Republishes the table on every view change until the view channel closes.
pub async fn feed(
    config: Arc<SidecarConfig>,
    mut view: watch::Receiver<MembershipView>,
    table: watch::Sender<Arc<RoutingTable>>,
    ready: Option<watch::Sender<bool>>,
) {
    let mut version = table.borrow().version;
    loop {
        let current = view.borrow_and_update().clone();
        if current.get(&config.pod.name).is_some() {
            version += 1;
            let next = table_from_view(&config, &current, version);
            let _ = table.send(Arc::new(next));
            if let Some(ready) = &ready {
                let _ = ready.send(true);
            }
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

/// `/debug/members` from the gossip view: every member with its health,
/// incarnation and announced state.
pub fn debug_source(view: watch::Receiver<MembershipView>) -> crate::admin::DebugSource {
    Arc::new(move || {
        let v = view.borrow().clone();
        serde_json::json!({
            "local": v.local,
            "members": v.members.iter().map(|m| serde_json::json!({
                "pod": m.meta.pod,
                "service": m.meta.service,
                "inbound": m.meta.inbound,
                "admin": m.meta.admin,
                "zone": m.meta.zone,
                "state": format!("{:?}", m.meta.state).to_lowercase(),
                "health": format!("{:?}", m.health).to_lowercase(),
                "incarnation": m.incarnation,
                "gossip": m.gossip_addr.to_string(),
                "tags": m.meta.tags,
            })).collect::<Vec<_>>(),
        })
    })
}

/// Reports gossip events into the sidecar's prometheus metrics.
pub struct GossipMetrics(pub Metrics);

impl GossipMetrics {
    /// Creates every label combination at zero, so the first bad packet or
    /// failed probe shows up in `rate()` instead of starting a new series.
    pub fn new(metrics: Metrics) -> Self {
        for reason in [
            BadPacket::Oversized,
            BadPacket::Truncated,
            BadPacket::Version,
            BadPacket::Auth,
            BadPacket::Malformed,
        ] {
            metrics
                .gossip_bad_packets
                .with_label_values(&[reason.as_str()]);
        }
        for result in [
            ProbeResult::Ack,
            ProbeResult::IndirectAck,
            ProbeResult::Failed,
        ] {
            metrics.gossip_probes.with_label_values(&[result.as_str()]);
        }
        for state in ["alive", "suspect", "dead", "left"] {
            metrics.members.with_label_values(&[state]);
        }
        for direction in ["sent", "received"] {
            metrics.gossip_bytes.with_label_values(&[direction]);
        }
        Self(metrics)
    }
}

impl GossipObserver for GossipMetrics {
    fn members(&self, counts: HealthCounts) {
        let m = &self.0.members;
        m.with_label_values(&["alive"]).set(counts.alive as i64);
        m.with_label_values(&["suspect"]).set(counts.suspect as i64);
        m.with_label_values(&["dead"]).set(counts.dead as i64);
        m.with_label_values(&["left"]).set(counts.left as i64);
    }
    fn probe(&self, result: ProbeResult) {
        self.0
            .gossip_probes
            .with_label_values(&[result.as_str()])
            .inc();
    }
    fn suspicion(&self) {
        self.0.gossip_suspicions.inc();
    }
    fn refutation(&self) {
        self.0.gossip_refutations.inc();
    }
    fn bad_packet(&self, reason: BadPacket) {
        self.0
            .gossip_bad_packets
            .with_label_values(&[reason.as_str()])
            .inc();
    }
    fn bytes_sent(&self, n: usize) {
        self.0
            .gossip_bytes
            .with_label_values(&["sent"])
            .inc_by(n as u64);
    }
    fn bytes_received(&self, n: usize) {
        self.0
            .gossip_bytes
            .with_label_values(&["received"])
            .inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests;
