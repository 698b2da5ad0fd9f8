//! The managed shard gate: serve, hold during acquisition, forward, or
//! refuse, as the handoff state machine says.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shardmesh_shards::Route;
use tokio::sync::oneshot;

use super::{Event, Shared};
use crate::gate::{Admission, ShardGate};

/// Asks the shard table before a request reaches the app.
pub struct ManagedGate {
    shared: Arc<Shared>,
}

/// Counts a request against its shard until dropped, so a releasing owner
/// knows when the shard has drained.
struct ShardInflight {
    shared: Arc<Shared>,
    shard: u32,
}

impl ManagedGate {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn serve(&self, shard: u32, epoch: u64) -> Admission {
        if let Some(c) = self.shared.inflight.get(shard as usize) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        Admission::Serve {
            epoch,
            guard: Some(Box::new(ShardInflight {
                shared: self.shared.clone(),
                shard,
            })),
        }
    }

    fn forward(&self, shard: u32, owner: &str) -> Admission {
        let table = self.shared.table.borrow().clone();
        // A suspect owner is likely dead: the routing table (fed by the same
        // view) may already have moved on; do not forward to it.
        let inbound = table
            .service(&self.shared.service)
            .and_then(|r| r.endpoints.iter().find(|e| &*e.name == owner))
            .filter(|e| e.health == crate::routing::EndpointHealth::Alive)
            .map(|e| e.inbound.clone());
        match inbound {
            Some(inbound) => Admission::Forward {
                owner: Arc::from(owner),
                inbound,
            },
            None => Admission::NoOwner(format!(
                "shard {shard} belongs to {owner}, which is not reachable from here"
            )),
        }
    }
}

/// Most requests one pod keeps waiting for its view to catch up with an
/// owner it cannot reach; beyond, they are refused at once.
pub(super) const MAX_REROUTING: usize = 1024;

/// What routing one request decided.
enum Next<'a> {
    /// Answered at once.
    Done(Admission),
    /// Held during an acquisition: the answer comes through the channel.
    Held(oneshot::Receiver<Admission>),
    /// The owner in the shard table is gone from the routing table (the
    /// two are fed by the same view, the shard table a moment later) or
    /// suspected (a caller whose view declared it dead sent us the request
    /// as the new owner): look again after the manager's next turn, or
    /// answer with the refusal.
    Reroute(tokio::sync::futures::Notified<'a>, Admission),
}

/// One request waiting for the manager's next turn; frees its place when dropped.
struct Rerouting<'a>(&'a AtomicUsize);

impl Drop for Rerouting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ManagedGate {
    fn route(&self, shard: u32) -> Next<'_> {
        let mut state = self.shared.lock();
        match state.table.route(Instant::now(), shard) {
            Route::Local { epoch } => Next::Done(self.serve(shard, epoch)),
            Route::Forward(owner) => match self.forward(shard, owner.as_str()) {
                // Created under the lock the manager takes to apply a view,
                // so its next turn cannot slip by unnoticed.
                refusal @ Admission::NoOwner(_) => {
                    Next::Reroute(self.shared.turned.notified(), refusal)
                }
                a => Next::Done(a),
            },
            Route::NoOwner if !state.table.has_majority() => Next::Done(Admission::NoOwner(
                "this member cannot reach a majority of its service".into(),
            )),
            Route::NoOwner => Next::Done(Admission::NoOwner(format!(
                "shard {shard} has no serving owner"
            ))),
            Route::Hold => {
                // Registered under the same lock that routed, so the
                // action that wakes held requests cannot slip between.
                let (tx, rx) = oneshot::channel();
                state.held.entry(shard).or_default().push(tx);
                Next::Held(rx)
            }
        }
    }

    /// A place among the requests waiting for a turn, or `None` when
    /// [`MAX_REROUTING`] already wait.
    fn rerouting(&self) -> Option<Rerouting<'_>> {
        let count = &self.shared.rerouting;
        if count.fetch_add(1, Ordering::SeqCst) >= MAX_REROUTING {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Rerouting(count))
    }
}

impl ShardGate for ManagedGate {
    fn admit<'a>(
        &'a self,
        service: &'a str,
        shard: u32,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        Box::pin(async move {
            if service != self.shared.service {
                return Admission::NoOwner(format!("this pod owns no shards of {service}"));
            }
            // Bounded like a held request: the view catches up within the
            // failure detector's dissemination, or the caller gets no-owner.
            let give_up = Instant::now() + self.shared.hold_timeout;
            let mut place = None;
            let waiter = loop {
                match self.route(shard) {
                    Next::Done(a) => return a,
                    Next::Held(rx) => break rx,
                    Next::Reroute(turned, refusal) => {
                        if place.is_none() {
                            place = self.rerouting();
                        }
                        let left = give_up.saturating_duration_since(Instant::now());
                        if place.is_none() || left.is_zero() {
                            return refusal;
                        }
                        let _ = tokio::time::timeout(left, turned).await;
                    }
                }
            };
            drop(place);
            let timeout = self.shared.hold_timeout + std::time::Duration::from_secs(1);
            match tokio::time::timeout(timeout, waiter).await {
                Ok(Ok(Admission::Serve { epoch, .. })) => self.serve(shard, epoch),
                Ok(Ok(other)) => other,
                _ => Admission::NoOwner(format!("shard {shard} is being handed off; try again")),
            }
        })
    }
}

impl Drop for ShardInflight {
    fn drop(&mut self) {
        let i = self.shard as usize;
        let Some(count) = self.shared.inflight.get(i) else {
            return;
        };
        if count.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(flag) = self.shared.draining.get(i) {
                if flag.swap(false, Ordering::SeqCst) {
                    let _ = self.shared.events.send(Event::Drained(self.shard));
                }
            }
        }
    }
}
