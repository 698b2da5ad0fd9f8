//! The dead-owner margin: how long a member declared dead still counts as
//! possibly holding its shards (see [`super::HandoffConfig::dead_owner_margin`]).

use std::time::Instant;

use super::ShardTable;
use crate::{Health, Peer};

impl ShardTable {
    /// Starts the margin clock of members newly dead in the view while this
    /// member reaches a majority; forgets members that are not dead (any
    /// more), and every clock while there is no majority, so verdicts
    /// reached on the small side of a partition start afresh once it heals.
    pub(super) fn track_dead(&mut self, now: Instant) {
        if !self.majority.has_majority() {
            self.dead_since.clear();
            return;
        }
        let peers = &self.peers;
        self.dead_since
            .retain(|id, _| peers.get(id).is_some_and(|p| p.health == Health::Dead));
        for p in self.peers.values().filter(|p| p.health == Health::Dead) {
            self.dead_since.entry(p.id.clone()).or_insert(Some(now));
        }
        let margin = self.cfg.dead_owner_margin;
        for since in self.dead_since.values_mut() {
            if since.is_some_and(|t| now >= t + margin) {
                *since = None;
            }
        }
    }

    /// Whether `p` may still hold shards at its app: an owner, a leaving
    /// member, or a member dead for less than the margin (a false verdict
    /// it has not heard of yet leaves it serving).
    pub(super) fn may_hold(&self, now: Instant, p: &Peer) -> bool {
        if p.health.may_hold_shards() {
            return true;
        }
        p.health == Health::Dead
            && match self.dead_since.get(&p.id) {
                // No clock: dead since before this member had a majority.
                None => true,
                Some(None) => false,
                Some(Some(since)) => now < *since + self.cfg.dead_owner_margin,
            }
    }

    /// When the next margin runs out, for timers.
    pub(super) fn margin_deadline(&self) -> Option<Instant> {
        let margin = self.cfg.dead_owner_margin;
        self.dead_since
            .values()
            .flatten()
            .map(|t| *t + margin)
            .min()
    }
}
