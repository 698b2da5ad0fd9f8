//! Keep-majority: a member that cannot reach a majority of its service's
//! last stable membership stops serving, so a clean partition never has two
//! serving owners of one shard.
//!
//! Rules (see `docs/sharding.md` for the trade-off):
//! - The *candidate* membership is the set of alive and suspect members.
//! - It becomes the *stable* membership once unchanged for `stable_after`
//!   and, when a stable membership exists, only while this member reaches a
//!   majority of it: a minority never adopts its own side as stable.
//! - Members that *left* gracefully leave the stable membership at once
//!   (they released their shards; they are not across a partition).
//! - This member has a majority when more than half of the stable members
//!   are alive in its view (suspect and dead do not count).
//! - Bootstrap: the first candidate with more than one member is adopted at
//!   once (a member that sees others has joined the cluster); a lone member
//!   waits `stable_after` like any change, so a restarting pod that has not
//!   joined yet does not take every shard. Before any stable membership
//!   there is no majority.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::{Health, MemberId, Peer};

/// Remembers the last stable membership and answers "do I reach a majority?".
#[derive(Clone, Debug)]
pub struct KeepMajority {
    /// How long the candidate membership must stay unchanged to be stable.
    stable_after: Duration,
    /// The last stable membership; empty before the first one.
    stable: BTreeSet<MemberId>,
    /// The current candidate and since when it has been unchanged.
    candidate: BTreeSet<MemberId>,
    candidate_since: Option<Instant>,
    /// Members alive in the last view.
    alive: BTreeSet<MemberId>,
}

impl KeepMajority {
    /// A tracker that adopts a membership after `stable_after` unchanged.
    pub fn new(stable_after: Duration) -> Self {
        Self {
            stable_after,
            stable: BTreeSet::new(),
            candidate: BTreeSet::new(),
            candidate_since: None,
            alive: BTreeSet::new(),
        }
    }

    /// Feeds the current view of the service (including this member).
    pub fn observe(&mut self, now: Instant, peers: &[Peer]) {
        for p in peers.iter().filter(|p| p.health == Health::Left) {
            self.stable.remove(&p.id);
        }
        self.alive = peers
            .iter()
            .filter(|p| p.health == Health::Alive)
            .map(|p| p.id.clone())
            .collect();
        let candidate: BTreeSet<MemberId> = peers
            .iter()
            .filter(|p| p.health.owns_shards())
            .map(|p| p.id.clone())
            .collect();
        if candidate != self.candidate || self.candidate_since.is_none() {
            self.candidate = candidate;
            self.candidate_since = Some(now);
        }
        self.tick(now);
    }

    /// Advances time: adopts the candidate once it has been stable long enough.
    pub fn tick(&mut self, now: Instant) {
        let Some(since) = self.candidate_since else {
            return;
        };
        let settled = now.saturating_duration_since(since) >= self.stable_after
            || (self.stable.is_empty() && self.candidate.len() > 1);
        if settled
            && !self.candidate.is_empty()
            && self.candidate != self.stable
            && (self.stable.is_empty() || self.has_majority())
        {
            self.stable = self.candidate.clone();
        }
    }

    /// Whether more than half of the stable membership is alive in our view.
    pub fn has_majority(&self) -> bool {
        if self.stable.is_empty() {
            return false;
        }
        let reached = self
            .stable
            .iter()
            .filter(|m| self.alive.contains(*m))
            .count();
        2 * reached > self.stable.len()
    }

    /// The last stable membership, for `/debug/shards`.
    pub fn stable(&self) -> &BTreeSet<MemberId> {
        &self.stable
    }

    /// When the candidate membership would become stable, for timers.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.candidate != self.stable)
            .then_some(self.candidate_since)
            .flatten()
            .map(|t| t + self.stable_after)
    }
}

#[cfg(test)]
mod tests;
