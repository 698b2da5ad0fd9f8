//! Keep-majority: a member that cannot reach a majority of its service's
//! last stable membership stops serving, so a clean partition never has two
//! serving owners of one shard.
//!
//! The membership counted against (*the stable membership*) is tracked so
//! that both sides of a partition count the same members:
//! - Members seen alive or suspect join it at once, but only while this
//!   member has a majority (a minority cannot grow itself a majority).
//! - Dead members stay in it until they have been dead for `stable_after`
//!   while this member had a majority; a minority never drops the other
//!   side. Members missing from the view count as dead.
//! - Members that *left* gracefully, or are *leaving*, leave it at once
//!   (they hand their shards off; they are not across a partition).
//! - A member has a majority when more than half of the stable membership
//!   is alive in its view (suspect and dead do not count).
//! - Bootstrap: the first view that knows other members is adopted at once,
//!   dead ones included, so a member joining the small side of a partition
//!   (its view says the others are dead) is no majority. A lone member that
//!   knows nobody waits `stable_after`, so a restarting pod that has not
//!   joined yet does not take every shard. Before that there is no majority.
//!
//! Known limit: members that *join* the small side during a partition and
//! see only it (see `docs/sharding.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::{Health, MemberId, Peer};

/// Remembers the stable membership and answers "do I reach a majority?".
#[derive(Clone, Debug)]
pub struct KeepMajority {
    /// How long a member must stay dead before it stops counting, and how
    /// long a lone member waits before it counts itself a majority.
    stable_after: Duration,
    /// The stable membership: each member, with when it was last seen dead
    /// (None while alive or suspect).
    members: BTreeMap<MemberId, Option<Instant>>,
    /// Members alive in the last view.
    alive: BTreeSet<MemberId>,
    /// Whether the stable membership was set up.
    bootstrapped: bool,
    /// A lone member's view: itself, and since when it has been alone.
    lone: Option<(MemberId, Instant)>,
}

impl KeepMajority {
    /// A tracker whose dead members stop counting after `stable_after`.
    pub fn new(stable_after: Duration) -> Self {
        Self {
            stable_after,
            members: BTreeMap::new(),
            alive: BTreeSet::new(),
            bootstrapped: false,
            lone: None,
        }
    }

    /// Feeds the current view of the service (including this member).
    pub fn observe(&mut self, now: Instant, peers: &[Peer]) {
        for p in peers.iter().filter(|p| is_departing(p.health)) {
            self.members.remove(&p.id);
        }
        self.alive = peers
            .iter()
            .filter(|p| p.health == Health::Alive)
            .map(|p| p.id.clone())
            .collect();
        if !self.bootstrapped {
            self.bootstrap(now, peers);
        } else {
            let majority = self.has_majority();
            let mut seen = BTreeSet::new();
            for p in peers.iter().filter(|p| p.health.owns_shards()) {
                seen.insert(&p.id);
                match self.members.get_mut(&p.id) {
                    Some(dead_since) => *dead_since = None,
                    None if majority => {
                        self.members.insert(p.id.clone(), None);
                    }
                    None => {}
                }
            }
            for (id, dead_since) in self.members.iter_mut() {
                if !seen.contains(id) && dead_since.is_none() {
                    *dead_since = Some(now);
                }
            }
        }
        self.tick(now);
    }

    fn bootstrap(&mut self, now: Instant, peers: &[Peer]) {
        let known: Vec<&Peer> = peers.iter().filter(|p| !is_departing(p.health)).collect();
        match known.as_slice() {
            [] => {}
            [me] => {
                if self.lone.as_ref().is_none_or(|(id, _)| *id != me.id) {
                    self.lone = Some((me.id.clone(), now));
                }
            }
            _ => {
                self.members = known
                    .iter()
                    .map(|p| (p.id.clone(), (!p.health.owns_shards()).then_some(now)))
                    .collect();
                self.bootstrapped = true;
                self.lone = None;
            }
        }
    }

    /// Advances time: a lone member adopts itself; long-dead members are
    /// dropped while a majority is reached.
    pub fn tick(&mut self, now: Instant) {
        if let Some((me, since)) = &self.lone {
            if !self.bootstrapped && now >= *since + self.stable_after {
                self.members = BTreeMap::from([(me.clone(), None)]);
                self.bootstrapped = true;
                self.lone = None;
            }
        }
        if self.has_majority() {
            let after = self.stable_after;
            self.members
                .retain(|_, dead_since| dead_since.is_none_or(|t| now < t + after));
        }
    }

    /// Whether more than half of the stable membership is alive in our view.
    pub fn has_majority(&self) -> bool {
        if !self.bootstrapped || self.members.is_empty() {
            return false;
        }
        let reached = self
            .members
            .keys()
            .filter(|m| self.alive.contains(*m))
            .count();
        2 * reached > self.members.len()
    }

    /// The stable membership, for `/debug/shards`.
    pub fn members(&self) -> impl Iterator<Item = &MemberId> {
        self.members.keys()
    }

    /// When [`Self::tick`] may next change something, for timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lone = self.lone.as_ref().map(|(_, t)| *t + self.stable_after);
        // Dead members are only dropped while a majority is reached, so
        // without one only a new view can change anything.
        let dead = self
            .members
            .values()
            .flatten()
            .filter(|_| self.has_majority())
            .map(|t| *t + self.stable_after);
        lone.into_iter().chain(dead).min()
    }
}

/// A member that left or is leaving gracefully: not part of the stable
/// membership any more.
fn is_departing(h: Health) -> bool {
    matches!(h, Health::Left | Health::Leaving)
}

#[cfg(test)]
mod tests;
