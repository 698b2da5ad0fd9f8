//! Holding keyed requests for an unreachable owner until its shards move.
//!
//! An owner whose breaker is open fails keyed requests fast (`circuit-open`,
//! DESIGN.md). That is right for an owner that answers badly (slow app,
//! 5xx): the caller learns at once and ownership will not move. It is wrong
//! for an owner that is gone (`kill -9`, node lost): the failure detector
//! will declare it dead within seconds and its shards move, so the request
//! can succeed within its deadline. Akka Cluster Sharding buffers messages
//! for a shard whose home is being re-allocated; this does the same on the
//! calling side: a keyed request whose owner is unreachable (its last try
//! got no answer at all) waits for a new routing table, except one probe per
//! [`PROBE_EVERY`] that still tries the owner; so does one whose owner's
//! breaker refuses while gossip suspects it. The wait is bounded by the
//! request's deadline and by [`MAX_HELD`] per sidecar.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Most keyed requests one sidecar holds at a time; beyond, they fail fast.
pub const MAX_HELD: usize = 1024;
/// How often a held request looks again without a table change (the
/// breaker may have opened for a probe meanwhile).
const RECHECK: Duration = Duration::from_millis(100);
/// While a peer is unreachable, one request per this period still tries to
/// connect (the pod may be back, e.g. restarted faster than detection).
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Peers remembered as unreachable before the set is forgotten.
const PRUNE_ABOVE: usize = 256;

/// Peers whose last attempt got no answer (no connection, or the
/// connection broke), and the held-request count.
#[derive(Default)]
pub struct Unreachable {
    /// Each unreachable peer with when the next request may try it.
    peers: Mutex<HashMap<Arc<str>, Instant>>,
    /// Size of `peers`, kept under its lock: while it is 0 (nearly always)
    /// every request skips the lock.
    count: AtomicUsize,
    held: AtomicUsize,
}

/// One held request; frees its place when dropped.
pub struct HeldSlot<'a>(&'a AtomicUsize);

impl Unreachable {
    /// Records the outcome of a try to `peer`: `answered` when a response
    /// came back (whatever its status). The set is forgotten when it grows
    /// beyond [`PRUNE_ABOVE`] peers (a failure is learned again).
    pub fn record(&self, peer: &Arc<str>, answered: bool) {
        if answered && self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if answered {
            peers.remove(peer);
            self.count.store(peers.len(), Ordering::Release);
            return;
        }
        if peers.len() >= PRUNE_ABOVE {
            peers.clear();
        }
        // The first failure lets the next request try again at once (one
        // broken connection is not a dead pod); then one try per period.
        let now = Instant::now();
        match peers.get_mut(peer) {
            Some(at) => *at = (*at).max(now + PROBE_EVERY),
            None => {
                peers.insert(peer.clone(), now);
            }
        }
        self.count.store(peers.len(), Ordering::Release);
    }

    /// Forgets `peer` (it restarted or left): its next process starts
    /// with a clean slate.
    pub fn forget(&self, peer: &str) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.remove(peer);
        self.count.store(peers.len(), Ordering::Release);
    }

    /// Whether the last try to `peer` got no answer.
    pub fn contains(&self, peer: &str) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.contains_key(peer)
    }

    /// Whether a request for unreachable `peer` should wait: `false` for a
    /// reachable peer, and for one request per [`PROBE_EVERY`] (the probe).
    pub fn should_wait(&self, peer: &str, now: Instant) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get_mut(peer) {
            None => false,
            Some(at) if now >= *at => {
                *at = now + PROBE_EVERY;
                false
            }
            Some(_) => true,
        }
    }

    /// A place for one more held request, or `None` when [`MAX_HELD`] are held.
    pub fn hold(&self) -> Option<HeldSlot<'_>> {
        let prev = self.held.fetch_add(1, Ordering::SeqCst);
        if prev >= MAX_HELD {
            self.held.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(HeldSlot(&self.held))
    }

    /// Requests held right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits until `changed` resolves (a new routing table), [`RECHECK`] passed,
/// or `until`; returns `false` once `until` has passed.
pub async fn wait_a_little(changed: impl std::future::Future<Output = ()>, until: Instant) -> bool {
    let now = Instant::now();
    if now >= until {
        return false;
    }
    let nap = (now + RECHECK).min(until);
    tokio::select! {
        () = changed => {}
        () = tokio::time::sleep_until(nap) => {}
    }
    Instant::now() < until
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unreachable_until_an_answer_with_one_probe_per_period() {
        let u = Unreachable::default();
        let p: Arc<str> = Arc::from("bank-1");
        let t0 = Instant::now();
        assert!(!u.contains("bank-1"));
        assert!(!u.should_wait("bank-1", t0));
        u.record(&p, false);
        assert!(u.contains("bank-1"));
        assert!(!u.should_wait("bank-1", t0), "a first failure: try again");
        u.record(&p, false);
        assert!(u.should_wait("bank-1", t0));
        let t1 = t0 + PROBE_EVERY;
        assert!(!u.should_wait("bank-1", t1), "the probe");
        assert!(u.should_wait("bank-1", t1), "one probe per period");
        assert!(!u.should_wait("bank-1", t1 + PROBE_EVERY));
        u.record(&p, true);
        assert!(!u.contains("bank-1"));
        assert!(!u.should_wait("bank-1", t1));
    }

    #[test]
    fn the_set_stays_bounded() {
        let u = Unreachable::default();
        for i in 0..10 * PRUNE_ABOVE {
            let p: Arc<str> = Arc::from(format!("gone-{i}").as_str());
            u.record(&p, false);
        }
        assert!(u.peers.lock().unwrap().len() <= PRUNE_ABOVE);
    }

    #[test]
    fn held_requests_are_bounded() {
        let u = Unreachable::default();
        let slots: Vec<_> = (0..MAX_HELD).map(|_| u.hold().unwrap()).collect();
        assert!(u.hold().is_none());
        assert_eq!(u.held(), MAX_HELD);
        drop(slots);
        assert_eq!(u.held(), 0);
        assert!(u.hold().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_on_a_change_a_recheck_or_the_deadline() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(1);
        assert!(wait_a_little(async {}, until).await);
        assert_eq!(Instant::now(), t0, "a change ends the wait at once");
        assert!(wait_a_little(std::future::pending(), until).await);
        assert_eq!(Instant::now(), t0 + RECHECK);
        let late = t0 + RECHECK + Duration::from_millis(30);
        assert!(!wait_a_little(std::future::pending(), late).await);
        assert_eq!(Instant::now(), late);
        assert!(!wait_a_little(async {}, late).await, "past the deadline");
    }
}
