//! The breakers of every peer of one service, shared by the request path
//! (admission, outcomes) and the keyless balancer (availability).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::time::Instant;

use super::state::{Admission, Breaker};
use super::BreakerSettings;
use crate::backoff::Jitter;
use crate::errors::CircuitOpen;
use crate::observer::{BreakerState, SharedObserver};

/// One breaker per peer, created on first use. Entries live until
/// [`Breakers::retain`] drops peers that left the membership, so memory is
/// bounded by the number of peers the router knows.
pub struct Breakers {
    settings: BreakerSettings,
    observer: SharedObserver,
    jitter: Jitter,
    peers: RwLock<HashMap<Arc<str>, Arc<Mutex<Breaker>>>>,
}

/// An admitted request's claim on its peer's breaker. Finish it with the
/// outcome; dropped unfinished, it counts as a failure if the request's
/// deadline (or try deadline) had passed — the peer did not answer in
/// time — and is forgotten otherwise (the caller went away).
#[must_use = "a ticket must be finished with the outcome"]
pub struct Ticket {
    breakers: Arc<Breakers>,
    peer: Arc<str>,
    breaker: Arc<Mutex<Breaker>>,
    admission: Admission,
    expires: Option<Instant>,
    done: bool,
}

// === impl Breakers ===

impl Breakers {
    /// An empty registry reporting transitions to `observer`.
    pub fn new(settings: BreakerSettings, observer: SharedObserver) -> Arc<Self> {
        Self::with_jitter(settings, observer, Jitter::Random)
    }

    /// Like [`Breakers::new`] with the randomness of open periods injected.
    pub fn with_jitter(
        settings: BreakerSettings,
        observer: SharedObserver,
        jitter: Jitter,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            observer,
            jitter,
            peers: RwLock::new(HashMap::new()),
        })
    }

    /// The state of `peer`'s breaker; a peer never seen is closed.
    pub fn state(&self, peer: &str) -> BreakerState {
        self.get(peer)
            .map_or(BreakerState::Closed, |b| lock(&b).state())
    }

    /// Whether a request to `peer` at `now` would be admitted; keyless
    /// routing uses it to avoid open endpoints.
    pub fn is_available(&self, peer: &str, now: Instant) -> bool {
        self.get(peer).is_none_or(|b| lock(&b).is_available(now))
    }

    /// Asks to send a request to `peer` now. `expires` is when the request
    /// gives up waiting (see [`Ticket`]).
    pub fn admit(
        self: &Arc<Self>,
        peer: &Arc<str>,
        expires: Option<Instant>,
    ) -> Result<Ticket, CircuitOpen> {
        let breaker = self.get_or_insert(peer);
        let decision = lock(&breaker).admit(Instant::now());
        if let Some(to) = decision.transition {
            self.observer.breaker_transition(peer, to);
        }
        match decision.admission {
            Some(admission) => Ok(Ticket {
                breakers: self.clone(),
                peer: peer.clone(),
                breaker,
                admission,
                expires,
                done: false,
            }),
            None => Err(CircuitOpen {
                peer: peer.to_string(),
            }),
        }
    }

    /// Keeps only the peers for which `keep` is true (call when membership changes).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|peer, _| keep(peer));
    }

    /// Drops `peer`'s breaker (its pod restarted, rejoined or left): the
    /// next request starts from a closed breaker. A breaker that was not
    /// closed reports a transition to closed, so the gauge follows.
    pub fn forget(&self, peer: &str) {
        let removed = {
            let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
            peers.remove_entry(peer)
        };
        if let Some((name, b)) = removed {
            if lock(&b).state() != BreakerState::Closed {
                self.observer
                    .breaker_transition(&name, BreakerState::Closed);
            }
        }
    }

    /// Every known peer with its state, for `/debug` pages and gauges.
    pub fn snapshot(&self) -> Vec<(Arc<str>, BreakerState)> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .map(|(p, b)| (p.clone(), lock(b).state()))
            .collect()
    }

    fn get(&self, peer: &str) -> Option<Arc<Mutex<Breaker>>> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers.get(peer).cloned()
    }

    fn get_or_insert(&self, peer: &Arc<str>) -> Arc<Mutex<Breaker>> {
        if let Some(b) = self.get(peer) {
            return b;
        }
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers
            .entry(peer.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Breaker::new(self.settings, Instant::now()))))
            .clone()
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("settings", &self.settings)
            .field("peers", &self.snapshot())
            .finish()
    }
}

/// The breaker's lock: a panic elsewhere cannot leave it half-updated in a
/// way that matters more than failing every request, so poisoning is ignored.
fn lock(b: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    b.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Ticket ===

impl Ticket {
    /// Reports the request's outcome: success, or failure (an error or a 5xx).
    pub fn finish(mut self, success: bool) {
        self.done = true;
        self.record(success);
    }

    /// Ends the request without an outcome: the answer said nothing about
    /// the peer's health (it shed the request, or does not own the shard).
    /// Nothing is counted; a half-open probe slot is freed.
    pub fn ignore(mut self) {
        self.done = true;
        lock(&self.breaker).cancel(self.admission);
    }

    /// The peer this ticket was issued for.
    pub fn peer(&self) -> &Arc<str> {
        &self.peer
    }

    fn record(&self, success: bool) {
        let now = Instant::now();
        let transition =
            lock(&self.breaker).record(self.admission, success, now, &self.breakers.jitter);
        if let Some(to) = transition {
            self.breakers.observer.breaker_transition(&self.peer, to);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.expires.is_some_and(|t| Instant::now() >= t) {
            self.record(false);
        } else {
            lock(&self.breaker).cancel(self.admission);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("peer", &self.peer)
            .field("admission", &self.admission)
            .finish()
    }
}
