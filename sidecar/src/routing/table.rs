//! The routing table: for every service, its live endpoints and the owner of
//! every shard. The proxy only reads it; it is published through a
//! `tokio::sync::watch` channel so that membership and shard ownership (static
//! config today, gossip and handoff later) can replace it without touching the
//! proxy.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use shardmesh_config::{PathTemplate, ResiliencePolicy, ServiceConfig, SidecarConfig};

/// Health of an endpoint as far as routing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointHealth {
    /// Reachable as far as we know.
    Alive,
    /// Suspected by the failure detector: keeps its shards, avoided by keyless traffic.
    Suspect,
}

/// One pod of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod name (breaker and load are keyed by it).
    pub name: Arc<str>,
    /// `host:port` of its inbound listener.
    pub inbound: Arc<str>,
    /// Alive or suspect.
    pub health: EndpointHealth,
    /// The pod's gossip generation (0 with static membership). A pod name
    /// outlives its processes: a new generation is a restarted or rejoined
    /// sidecar, and what callers learned about the old one (an open
    /// breaker, no answer) must not stick to it.
    pub generation: u64,
}

/// Ownership of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardOwner {
    /// Index into [`ServiceRoutes::endpoints`], or `None` when no live member owns it.
    pub endpoint: Option<usize>,
    /// Ownership epoch, grows with every handoff.
    pub epoch: u64,
}

/// Everything needed to route to one service.
#[derive(Clone, Debug)]
pub struct ServiceRoutes {
    /// Service name.
    pub name: Arc<str>,
    /// Shard count.
    pub shards: u32,
    /// Header carrying the key.
    pub key_header: HeaderName,
    /// Path template carrying the key.
    pub key_from_path: Option<PathTemplate>,
    /// Resilience policy for calls to this service.
    pub policy: Arc<ResiliencePolicy>,
    /// Live endpoints (alive or suspect), sorted by name.
    pub endpoints: Vec<Endpoint>,
    /// Owner of each shard, indexed by shard id.
    pub owners: Vec<ShardOwner>,
}

/// The whole view, replaced atomically on every change.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    /// This pod's name.
    pub local: Arc<str>,
    /// Services by name.
    pub services: HashMap<String, ServiceRoutes>,
    /// Increments with every published table (for `/debug` and tests).
    pub version: u64,
}

/// Why a table could not be built from config.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: {message}")]
pub struct TableError {
    service: String,
    message: String,
}

impl RoutingTable {
    /// The routes of `service`.
    pub fn service(&self, service: &str) -> Option<&ServiceRoutes> {
        self.services.get(service)
    }

    /// Builds the table from the config's static members. Shards listed by
    /// members are used as given; otherwise ownership is computed from the member list.
    pub fn from_static_config(config: &SidecarConfig) -> Result<Self, TableError> {
        let mut services = HashMap::new();
        for svc in &config.services {
            services.insert(svc.name.clone(), ServiceRoutes::from_static(svc)?);
        }
        Ok(Self {
            local: Arc::from(config.pod.name.as_str()),
            services,
            version: 1,
        })
    }
}

impl ServiceRoutes {
    /// Routes with no endpoints yet: the policy and key rules of `svc`.
    pub fn empty(svc: &ServiceConfig) -> Result<Self, TableError> {
        let err = |message: String| TableError {
            service: svc.name.clone(),
            message,
        };
        let key_header = HeaderName::from_bytes(svc.routing.key_header.as_bytes())
            .map_err(|e| err(format!("keyHeader: {e}")))?;
        let key_from_path = svc
            .routing
            .key_from_path
            .as_deref()
            .map(PathTemplate::parse)
            .transpose()
            .map_err(|e| err(format!("keyFromPath: {e}")))?;
        Ok(Self {
            name: Arc::from(svc.name.as_str()),
            shards: svc.shards,
            key_header,
            key_from_path,
            policy: Arc::new(svc.resilience.clone()),
            endpoints: Vec::new(),
            owners: vec![
                ShardOwner {
                    endpoint: None,
                    epoch: 0
                };
                svc.shards as usize
            ],
        })
    }

    fn from_static(svc: &ServiceConfig) -> Result<Self, TableError> {
        let mut routes = Self::empty(svc)?;
        let mut members: Vec<_> = svc.members.iter().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        routes.endpoints = members
            .iter()
            .map(|m| Endpoint {
                name: Arc::from(m.name.as_str()),
                inbound: Arc::from(m.inbound.as_str()),
                health: EndpointHealth::Alive,
                generation: 0,
            })
            .collect();
        if members.iter().any(|m| m.shards.is_some()) {
            for (i, m) in members.iter().enumerate() {
                for &s in m.shards.iter().flatten() {
                    if let Some(o) = routes.owners.get_mut(s as usize) {
                        *o = ShardOwner {
                            endpoint: Some(i),
                            epoch: 1,
                        };
                    }
                }
            }
        } else {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            routes.set_owners_by_name(&crate::routing::ownership::assign(svc.shards, &names), 1);
        }
        Ok(routes)
    }

    /// Sets shard owners from a list of owner names (one per shard).
    pub fn set_owners_by_name(&mut self, owners: &[Option<&str>], epoch: u64) {
        for (shard, owner) in owners.iter().enumerate() {
            let endpoint = owner.and_then(|o| self.endpoints.iter().position(|e| &*e.name == o));
            if let Some(slot) = self.owners.get_mut(shard) {
                *slot = ShardOwner { endpoint, epoch };
            }
        }
    }

    /// The shard of `key`.
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        shardmesh_shards::shard_for_key(key, self.shards)
    }

    /// The owner endpoint and epoch of `shard`.
    pub fn owner(&self, shard: u32) -> Option<(&Endpoint, u64)> {
        let o = self.owners.get(shard as usize)?;
        o.endpoint
            .and_then(|i| self.endpoints.get(i))
            .map(|e| (e, o.epoch))
    }

    /// Number of shards `pod` owns.
    pub fn owned_by(&self, pod: &str) -> usize {
        let Some(i) = self.endpoints.iter().position(|e| &*e.name == pod) else {
            return 0;
        };
        self.owners.iter().filter(|o| o.endpoint == Some(i)).count()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn two_member_config() -> SidecarConfig {
        SidecarConfig::from_yaml(
            r#"
pod: { name: bank-0, service: bank }
services:
  - name: bank
    shards: 4
    routing: { keyFromPath: "/accounts/{key}" }
    members:
      - { name: bank-1, inbound: "127.0.0.2:7401", shards: [2, 3] }
      - { name: bank-0, inbound: "127.0.0.1:7401", shards: [0, 1] }
"#,
        )
        .unwrap()
    }

    pub(crate) fn two_member_table() -> RoutingTable {
        RoutingTable::from_static_config(&two_member_config()).unwrap()
    }

    #[test]
    fn static_assignment_is_used_as_given() {
        let t = two_member_table();
        let bank = t.service("bank").unwrap();
        assert_eq!(bank.owner(0).unwrap().0.name.as_ref(), "bank-0");
        assert_eq!(bank.owner(3).unwrap().0.name.as_ref(), "bank-1");
        assert_eq!(bank.owner(3).unwrap().0.inbound.as_ref(), "127.0.0.2:7401");
        assert_eq!(bank.owned_by("bank-0"), 2);
        assert!(bank.owner(4).is_none());
    }

    #[test]
    fn computed_assignment_covers_every_shard() {
        let mut c = two_member_config();
        for m in &mut c.services[0].members {
            m.shards = None;
        }
        c.services[0].shards = 40;
        let t = RoutingTable::from_static_config(&c).unwrap();
        let bank = t.service("bank").unwrap();
        assert!((0..40).all(|s| bank.owner(s).is_some()));
        assert_eq!(bank.owned_by("bank-0") + bank.owned_by("bank-1"), 40);
        assert_eq!(bank.owned_by("bank-0"), 20);
    }
}
