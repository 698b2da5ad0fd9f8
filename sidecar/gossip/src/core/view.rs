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
    /// Brings the state mirror up to date with foca: a full rebuild after
    /// bulk changes, otherwise only the members touched since the last call
    /// (one pass over foca's list without hashing every member).
    pub(super) fn refresh(&mut self) {
        let changed = if std::mem::take(&mut self.dirty) {
            self.touched.clear();
            self.states.clear();
            for m in self.foca.iter_membership_state() {
                self.states
                    .insert(m.id().addr, (*m.id(), m.state(), m.incarnation()));
            }
            true
        } else if self.touched.is_empty() {
            false
        } else {
            let mut touched = std::mem::take(&mut self.touched);
            touched.sort_unstable();
            touched.dedup();
            let mut found = vec![false; touched.len()];
            let mut changed = false;
            for m in self.foca.iter_membership_state() {
                let Ok(k) = touched.binary_search(&m.id().addr) else {
                    continue;
                };
                found[k] = true;
                let entry = (*m.id(), m.state(), m.incarnation());
                if self.states.get(&m.id().addr) != Some(&entry) {
                    self.states.insert(m.id().addr, entry);
                    changed = true;
                }
            }
            for (addr, _) in touched.iter().zip(&found).filter(|(_, f)| !**f) {
                changed |= self.states.remove(addr).is_some();
            }
            touched.clear();
            self.touched = touched;
            changed
        };
        if !changed {
            return;
        }
        self.view_dirty = true;
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
            let mut meta = rec.meta.clone();
            // A protocol capability, not the sidecar's business.
            meta.tags.remove(super::watch::CHECKS_TAG);
            members.push(Member {
                meta,
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
