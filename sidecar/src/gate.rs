//! The shard gate: decides, on the owner side, whether this pod may serve a
//! shard right now. The static gate trusts the routing table; the shard
//! manager (handoff, keep-majority) implements the same trait, so the inbound
//! handler does not change when ownership becomes dynamic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::routing::TableRx;

/// How long a pod waits for its view to change when a forward bounced: the
/// pod it forwarded to names this pod as the owner, so one of the two views
/// is stale. On loopback views agreed again within about 80 ms (the gap the
/// scale-in test hit); a longer gap costs the caller one more retry, and
/// the pod whose view is right waits this long in vain, so it stays short.
pub const BOUNCE_WAIT: Duration = Duration::from_millis(500);

/// Whether a request reached this pod straight from the caller's sidecar or
/// was forwarded by a pod whose view names this one as the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// From the caller's sidecar: may be forwarded once.
    Direct,
    /// Already forwarded once: never forwarded again.
    Forwarded,
}

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
    /// A [`Arrival::Forwarded`] request that this pod would forward again
    /// waits (at most [`BOUNCE_WAIT`]) for this pod's view to change first:
    /// the forwarder names this pod as the owner, and if this pod's view is
    /// the stale one it serves the request once it catches up.
    fn admit<'a>(
        &'a self,
        service: &'a str,
        shard: u32,
        arrival: Arrival,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>>;

    /// After `owner` refused a request this pod forwarded to it as the
    /// owner of `shard`: waits, at most `wait`, until this pod no longer
    /// names `owner` as the owner, so that the caller's retry (the refusal
    /// is `no-owner`, which is retried) finds the new owner instead of
    /// bouncing again.
    fn bounced<'a>(
        &'a self,
        shard: u32,
        owner: &'a str,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// The app answered a request for `shard` served at `epoch` with
    /// [`crate::headers::FENCED`]: it does not hold the shard at that epoch.
    /// A gate that manages ownership ends that term and acquires the shard
    /// again; a static gate has nothing to acquire.
    fn fenced(&self, _shard: u32, _epoch: u64) {}
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
        _arrival: Arrival,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        // Static ownership comes from one config: a bounce is a config
        // mistake, not a view catching up, so nothing is worth waiting for.
        let decision = self.decide(service, shard);
        Box::pin(std::future::ready(decision))
    }

    fn bounced<'a>(
        &'a self,
        _shard: u32,
        _owner: &'a str,
        _wait: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(std::future::ready(()))
    }
}
