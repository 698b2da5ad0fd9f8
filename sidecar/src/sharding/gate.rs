//! The managed shard gate: serve, hold during acquisition, forward, or
//! refuse, as the handoff state machine says.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardmesh_shards::Route;
use tokio::sync::oneshot;

use super::{Event, Shared};
use crate::gate::{Admission, Arrival, ShardGate, BOUNCE_WAIT};

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
    /// Look again after the manager's next turn, or answer with `refusal`
    /// when the wait is over. Either the owner in the shard table is gone
    /// from the routing table (the two are fed by the same view, the shard
    /// table a moment later) or suspected (a caller whose view declared it
    /// dead sent us the request as the new owner); or, with `bounce`, a
    /// forwarded request this pod would forward again: the forwarder and
    /// this pod each name the other as the owner, and this pod's view may
    /// be the stale one, so it waits at most [`BOUNCE_WAIT`].
    Wait {
        turned: tokio::sync::futures::Notified<'a>,
        refusal: Admission,
        bounce: bool,
    },
}

/// One request waiting for the manager's next turn; frees its place when dropped.
struct Rerouting<'a>(&'a AtomicUsize);

impl Drop for Rerouting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ManagedGate {
    fn route(&self, shard: u32, arrival: Arrival) -> Next<'_> {
        let mut state = self.shared.lock();
        match state.table.route(Instant::now(), shard) {
            Route::Local { epoch } => Next::Done(self.serve(shard, epoch)),
            // The notifications are created under the lock the manager takes
            // to apply a view, so its next turn cannot slip by unnoticed.
            Route::Forward(owner) => match self.forward(shard, owner.as_str()) {
                refusal @ Admission::NoOwner(_) => Next::Wait {
                    turned: self.shared.turned.notified(),
                    refusal,
                    bounce: false,
                },
                refusal @ Admission::Forward { .. } if arrival == Arrival::Forwarded => {
                    Next::Wait {
                        turned: self.shared.turned.notified(),
                        refusal,
                        bounce: true,
                    }
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
        arrival: Arrival,
    ) -> Pin<Box<dyn Future<Output = Admission> + Send + 'a>> {
        Box::pin(async move {
            if service != self.shared.service {
                return Admission::NoOwner(format!("this pod owns no shards of {service}"));
            }
            // Bounded like a held request: the view catches up within the
            // failure detector's dissemination, or the caller gets no-owner.
            // Tokio's clock (the real one outside tests), so tests can pause it.
            let start = tokio::time::Instant::now();
            let give_up = start + self.shared.hold_timeout;
            let stop_bouncing = start + self.shared.hold_timeout.min(BOUNCE_WAIT);
            let mut place = None;
            let waiter = loop {
                let (turned, refusal, until) = match self.route(shard, arrival) {
                    Next::Done(a) => return a,
                    Next::Held(rx) => break rx,
                    Next::Wait {
                        turned,
                        refusal,
                        bounce,
                    } => (
                        turned,
                        refusal,
                        if bounce { stop_bouncing } else { give_up },
                    ),
                };
                if place.is_none() {
                    place = self.rerouting();
                }
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if place.is_none() || left.is_zero() {
                    return refusal;
                }
                let _ = tokio::time::timeout(left, turned).await;
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

    fn fenced(&self, shard: u32, epoch: u64) {
        // The term ends under the lock, before the next request routes, so
        // no further request reaches the app on the fenced epoch; the
        // acquisition it starts is carried out by the manager task.
        let actions = self
            .shared
            .lock()
            .table
            .fenced(Instant::now(), shard, epoch);
        if !actions.is_empty() {
            tracing::warn!(
                shard,
                epoch,
                "the app fenced this term; acquiring the shard again"
            );
            let _ = self.shared.events.send(Event::Actions(actions));
        }
    }

    fn bounced<'a>(
        &'a self,
        shard: u32,
        owner: &'a str,
        wait: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + wait;
            loop {
                let turned = {
                    let state = self.shared.lock();
                    if state.table.owner(shard).is_none_or(|o| o.as_str() != owner) {
                        return;
                    }
                    // Under the lock, like `route`: no turn slips by.
                    self.shared.turned.notified()
                };
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() || tokio::time::timeout(left, turned).await.is_err() {
                    return;
                }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use shardmesh_shards::{HandoffConfig, Health, MemberId, Peer, ShardTable};
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::routing::table::tests::two_member_table;
    use crate::sharding::State;

    /// The gate of `bank-0` in a view of `bank-0` and `bank-1` (the static
    /// two-member routing table gives both inbound addresses).
    fn gate() -> ManagedGate {
        let mut table = ShardTable::new(MemberId::new("bank-0"), HandoffConfig::new("bank", 4))
            .expect("valid handoff config");
        let _ = table.on_membership(Instant::now(), &both(Health::Alive));
        let (events, _) = mpsc::unbounded_channel();
        let (_tx, rx) = watch::channel(Arc::new(two_member_table()));
        ManagedGate::new(Arc::new(Shared {
            service: "bank".into(),
            state: Mutex::new(State {
                table,
                held: HashMap::new(),
            }),
            inflight: (0..4).map(|_| AtomicUsize::new(0)).collect(),
            draining: (0..4).map(|_| Default::default()).collect(),
            events,
            table: rx,
            hold_timeout: Duration::from_secs(5),
            turned: tokio::sync::Notify::new(),
            rerouting: AtomicUsize::new(0),
        }))
    }

    /// Polls once: whether the future is still waiting.
    fn pending<F: Future>(f: Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx).is_pending()
    }

    fn both(bank1: Health) -> [Peer; 2] {
        [
            Peer::new("bank-0", Health::Alive),
            Peer::new("bank-1", bank1),
        ]
    }

    /// A shard the view gives to `bank-1`.
    fn theirs(g: &ManagedGate) -> u32 {
        let state = g.shared.lock();
        (0..4)
            .find(|&s| state.table.owner(s).is_some_and(|o| o.as_str() == "bank-1"))
            .expect("bank-1 owns a shard")
    }

    /// `bank-1` leaves: every shard becomes `bank-0`'s, and the manager turns.
    fn bank1_leaves(g: &ManagedGate) {
        let _ = g
            .shared
            .lock()
            .table
            .on_membership(Instant::now(), &both(Health::Leaving));
        g.shared.turned.notify_waiters();
    }

    #[tokio::test(start_paused = true)]
    async fn a_direct_request_is_forwarded_at_once() {
        let g = gate();
        let s = theirs(&g);
        let start = tokio::time::Instant::now();
        let a = g.admit("bank", s, Arrival::Direct).await;
        assert!(matches!(a, Admission::Forward { ref owner, .. } if &**owner == "bank-1"));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_is_refused_after_the_bounce_wait_when_the_view_stays() {
        let g = gate();
        let s = theirs(&g);
        let start = tokio::time::Instant::now();
        let a = g.admit("bank", s, Arrival::Forwarded).await;
        assert!(matches!(a, Admission::Forward { .. }));
        assert_eq!(start.elapsed(), BOUNCE_WAIT);
        assert_eq!(g.shared.rerouting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_waits_for_this_pods_view_and_is_then_held_here() {
        let g = gate();
        let s = theirs(&g);
        let admit = g.admit("bank", s, Arrival::Forwarded);
        tokio::pin!(admit);
        // Waiting: neither refused nor forwarded again.
        assert!(pending(admit.as_mut()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        bank1_leaves(&g);
        // Our view now gives the shard to us: held while we acquire it.
        assert!(pending(admit.as_mut()));
        let held = g.shared.lock().held.remove(&s).unwrap_or_default();
        assert_eq!(held.len(), 1, "the request waits for the acquisition");
        for tx in held {
            let _ = tx.send(Admission::Serve {
                epoch: 9,
                guard: None,
            });
        }
        assert!(matches!(admit.await, Admission::Serve { epoch: 9, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounced_forwarder_waits_until_its_view_names_another_owner() {
        let g = gate();
        let s = theirs(&g);
        // Nothing changes: the wait ends at its bound.
        let start = tokio::time::Instant::now();
        g.bounced(s, "bank-1", Duration::from_millis(700)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        // A turn that keeps the owner does not end it; one that moves it does.
        let start = tokio::time::Instant::now();
        let wait = g.bounced(s, "bank-1", BOUNCE_WAIT);
        tokio::pin!(wait);
        assert!(pending(wait.as_mut()));
        g.shared.turned.notify_waiters();
        assert!(pending(wait.as_mut()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        bank1_leaves(&g);
        wait.await;
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        // Already another owner: no wait at all.
        let start = tokio::time::Instant::now();
        g.bounced(s, "bank-1", BOUNCE_WAIT).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
