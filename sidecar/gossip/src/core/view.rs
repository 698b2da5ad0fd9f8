//! The membership view: foca's member states joined with gossiped metadata.

use foca::State;

use super::Core;
use crate::meta::{Health, Member, MembershipView};
use crate::observer::HealthCounts;

/// Incarnation shown to the sidecar: restarts (generation) dominate refutations.
fn incarnation(generation: u64, swim: u16) -> u64 {
    (generation << 16) | u64::from(swim)
}

/// Health of a member from its SWIM state and whether it announced leaving.
fn health(state: State, left: bool) -> Health {
    match (state, left) {
        (State::Alive, _) => Health::Alive,
        (State::Suspect, _) => Health::Suspect,
        (State::Down, true) => Health::Left,
        (State::Down, false) => Health::Dead,
    }
}

/// Counts by health for the `members{state}` gauge.
pub(super) fn counts(view: &MembershipView) -> HealthCounts {
    let mut c = HealthCounts::default();
    for m in &view.members {
        match m.health {
            Health::Alive => c.alive += 1,
            Health::Suspect => c.suspect += 1,
            Health::Dead => c.dead += 1,
            Health::Left => c.left += 1,
        }
    }
    c
}

impl Core {
    /// Rebuilds the state mirror from foca when something may have changed.
    pub(super) fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.states.clear();
        for m in self.foca.iter_membership_state() {
            self.states
                .insert(m.id().addr, (*m.id(), m.state(), m.incarnation()));
        }
        // Forget suspicions that were refuted or settled by someone else.
        let states = &self.states;
        self.suspicions.retain(|addr, s| {
            matches!(states.get(addr), Some((id, State::Suspect, inc)) if *id == s.member() && *inc == s.incarnation())
        });
    }

    /// Builds the view from the mirror and the metadata table.
    pub(super) fn build_view(&self) -> MembershipView {
        let tables = self.tables.lock();
        let mut members = Vec::with_capacity(self.states.len() + 1);
        members.push(Member {
            meta: self.meta.clone(),
            incarnation: incarnation(self.id.generation, self.self_incarnation),
            health: if self.left {
                Health::Left
            } else {
                Health::Alive
            },
            gossip_addr: self.id.addr,
        });
        for (addr, (id, state, inc)) in &self.states {
            // Members whose metadata has not arrived yet are left out: the
            // sidecar cannot route to a member it knows nothing about.
            let Some(rec) = tables.metas.get(addr) else {
                continue;
            };
            members.push(Member {
                meta: rec.meta.clone(),
                incarnation: incarnation(id.generation, *inc),
                health: health(*state, rec.left && rec.id.generation >= id.generation),
                gossip_addr: *addr,
            });
        }
        // One entry per pod: a pod restarted at a new address leaves a
        // tombstone behind; prefer live entries, then the newest incarnation.
        members.sort_by(|a, b| {
            a.meta
                .pod
                .cmp(&b.meta.pod)
                .then_with(|| rank(a.health).cmp(&rank(b.health)))
                .then_with(|| b.incarnation.cmp(&a.incarnation))
        });
        members.dedup_by(|later, first| later.meta.pod == first.meta.pod);
        MembershipView {
            members,
            local: self.meta.pod.clone(),
        }
    }
}

/// Sort rank: live entries first.
fn rank(h: Health) -> u8 {
    match h {
        Health::Alive => 0,
        Health::Suspect => 1,
        Health::Left => 2,
        Health::Dead => 3,
    }
}
