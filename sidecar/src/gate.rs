//! The shard gate: decides, on the owner side, whether this pod may serve a
//! shard right now. The static gate trusts the routing table; the shard
//! manager (handoff, keep-majority) implements the same trait, so the inbound
//! handler does not change when ownership becomes dynamic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::routing::TableRx;

/// Keeps a shard's in-flight count until dropped, so a releasing owner can
/// wait for its requests to drain.
pub type InflightGuard = Box<dyn Send>;

/// What the gate allows for one request.
pub enum Admission {
    /// Serve it here under this ownership epoch.
    Serve {
        /// Ownership epoch for the app's fencing.
        epoch: u64,
        /// Held while the request runs.
        guard: Option<InflightGuard>,
    },
    /// Another pod owns the shard.
    Forward {
        /// Owner pod name.
        owner: Arc<str>,
        /// Owner's inbound address.
        inbound: Arc<str>,
    },
    /// Nobody may serve it now (handoff timed out, minority side, ...).
    NoOwner(String),
}

/// Decides admissions for this pod's own shards.
pub trait ShardGate: Send + Sync + 'static {
    /// Admission for `shard` of `service`; may wait (bounded) during a handoff.
    fn admit<'a>(
        &'a self,
        service: &'a str,
        shard: u32,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>>;
}

/// The gate of static ownership: whatever the routing table says.
pub struct TableGate {
    table: TableRx,
}

impl TableGate {
    /// A gate reading `table`.
    pub fn new(table: TableRx) -> Self {
        Self { table }
    }

    /// The admission the current table implies.
    pub fn decide(&self, service: &str, shard: u32) -> Admission {
        let table = self.table.borrow().clone();
        let Some(routes) = table.service(service) else {
            return Admission::NoOwner(format!("service {service} is not in the mesh view"));
        };
        match routes.owner(shard) {
            Some((e, epoch)) if e.name == table.local => Admission::Serve { epoch, guard: None },
            Some((e, _)) => Admission::Forward {
                owner: e.name.clone(),
                inbound: e.inbound.clone(),
            },
            None => Admission::NoOwner(format!("shard {shard} of {service} has no live owner")),
        }
    }
}

impl ShardGate for TableGate {
    fn admit<'a>(
        &'a self,
        service: &'a str,
        shard: u32,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        let decision = self.decide(service, shard);
        Box::pin(std::future::ready(decision))
    }
}
