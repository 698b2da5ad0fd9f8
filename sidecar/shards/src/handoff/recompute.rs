//! Reacting to a new view: who should own what, and starting acquisitions
//! and releases accordingly.

use std::time::Instant;

use super::{Action, Call, ShardTable, Slot, State, Step, Wait};
use crate::{assign, view_id, Assignment, Health, MemberId, ReleaseNotice};

impl ShardTable {
    /// Recomputes ownership from `self.peers` and moves every shard toward it.
    pub(super) fn recompute(&mut self, now: Instant, out: &mut Vec<Action>) {
        let owners: Vec<MemberId> = self
            .peers
            .values()
            .filter(|p| {
                let gone = (self.leaving.is_some() || self.declared_gone) && p.id == self.me;
                p.health.owns_shards() && !gone
            })
            .map(|p| p.id.clone())
            .collect();
        // Who held each shard before: our previous view, or on the first
        // view the owners without us (we hold nothing yet).
        let prev = match self.assignment.take() {
            // Tags change far more often than members: skip the work.
            Some(prev) if prev.members() == owners.as_slice() => {
                self.reconcile_all(now, &prev, &prev, out);
                self.assignment = Some(prev);
                self.acquire_ready(now, out);
                return;
            }
            Some(prev) => prev,
            None => {
                let others: Vec<MemberId> =
                    owners.iter().filter(|m| **m != self.me).cloned().collect();
                assign(self.cfg.shards, &others)
            }
        };
        let next = assign(self.cfg.shards, &owners);
        self.view = view_id(&owners);
        self.reconcile_all(now, &prev, &next, out);
        self.assignment = Some(next);
        self.acquire_ready(now, out);
    }

    /// Moves every shard from `prev` ownership toward `next`.
    fn reconcile_all(
        &mut self,
        now: Instant,
        prev: &Assignment,
        next: &Assignment,
        out: &mut Vec<Action>,
    ) {
        let active = self.majority.has_majority();
        // Leaving: keep serving until the others route around this member.
        let keep_serving = active && self.leave_pending() && !self.others_settled_without_me(now);
        for shard in 0..self.cfg.shards {
            if keep_serving
                && matches!(
                    self.slots.get(shard as usize).map(|s| &s.state),
                    Some(State::Serving { .. })
                )
            {
                continue;
            }
            let mine = active && next.owner(shard) == Some(&self.me);
            let prev_owner = prev.owner(shard).cloned();
            self.reconcile(now, shard, mine, prev_owner, out);
        }
    }

    /// Moves one shard toward the wanted ownership.
    fn reconcile(
        &mut self,
        now: Instant,
        shard: u32,
        mine: bool,
        prev_owner: Option<MemberId>,
        out: &mut Vec<Action>,
    ) {
        let me = self.me.clone();
        let Some(slot) = self.slots.get_mut(shard as usize) else {
            return;
        };
        if mine {
            if matches!(slot.state, State::NotOwned) {
                let wait = match prev_owner {
                    Some(p) if p != me => Wait::Owner(p),
                    _ => Wait::Barrier,
                };
                slot.state = State::Acquiring {
                    since: now,
                    wait,
                    call: Call::Idle,
                };
            }
            return;
        }
        // A notice heard while another member owns the shard is stale by
        // the time the shard comes back to us.
        slot.notice = None;
        give_up(shard, slot, out);
    }

    /// Calls the app acquire for every acquisition whose wait is over.
    pub(super) fn acquire_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.majority.has_majority() {
            return;
        }
        let barrier = self.barrier_passed(now);
        // A leaving member may still serve any shard it had, even one our
        // previous view gave to a dead owner (it kept serving while the
        // others caught up): that death frees nothing while one is around;
        // its release notice or the barrier will.
        let leaver_around = self
            .peers
            .values()
            .any(|q| q.id != self.me && q.health == Health::Leaving);
        for shard in 0..self.cfg.shards {
            let Some(slot) = self.slots.get(shard as usize) else {
                continue;
            };
            let ready = match &slot.state {
                State::Acquiring {
                    wait,
                    call: Call::Idle,
                    ..
                } => barrier || self.wait_over(now, wait, slot, leaver_around),
                _ => false,
            };
            if !ready {
                continue;
            }
            let epoch = self.next_epoch(now);
            if let Some(State::Acquiring { call, .. }) =
                self.slots.get_mut(shard as usize).map(|s| &mut s.state)
            {
                *call = Call::InFlight { epoch };
                out.push(Action::CallAcquire { shard, epoch });
            }
        }
    }

    /// One more than every epoch seen, and not below the wall-clock floor.
    fn next_epoch(&mut self, now: Instant) -> u64 {
        let mut epoch = self.max_epoch.saturating_add(1);
        if self.cfg.epoch_floor > 0 {
            let base = *self.clock_base.get_or_insert(now);
            let since = now.saturating_duration_since(base).as_micros();
            let wall = self
                .cfg
                .epoch_floor
                .saturating_add(u64::try_from(since).unwrap_or(u64::MAX));
            epoch = epoch.max(wall);
        }
        self.max_epoch = epoch;
        epoch
    }

    /// Whether the previous owner released, or died or left while no
    /// leaving member is around.
    fn wait_over(&self, now: Instant, wait: &Wait, slot: &Slot, leaver_around: bool) -> bool {
        match wait {
            Wait::Barrier => false,
            Wait::Owner(p) => {
                let gone = self
                    .peers
                    .get(p)
                    .is_none_or(|peer| !self.may_hold(now, peer));
                (gone && !leaver_around) || slot.notice.as_ref().is_some_and(|(from, _)| from == p)
            }
        }
    }

    /// Whether every other member that may hold shards (owners, leaving
    /// members that have not released yet, and members dead for less than
    /// the margin) settled on our view.
    fn barrier_passed(&self, now: Instant) -> bool {
        self.peers
            .values()
            .filter(|p| p.id != self.me && self.may_hold(now, p))
            .all(|p| p.settled == Some(self.view))
    }

    /// Leaving, and still serving some shard: the handoff has not started
    /// for everything yet.
    pub(super) fn leave_pending(&self) -> bool {
        self.leaving.is_some()
            && self
                .slots
                .iter()
                .any(|s| matches!(s.state, State::Serving { .. }))
    }

    /// Whether a leaving member may hand its served shards off now: every
    /// other member settled on the view without it, or the leave wait passed.
    pub(super) fn others_settled_without_me(&self, now: Instant) -> bool {
        let waited = self.leaving.is_some_and(|t| now >= t + self.cfg.leave_wait);
        waited || self.barrier_passed(now)
    }

    /// The app released the shard: gossip it and look at ownership again.
    pub(super) fn finish_release(
        &mut self,
        now: Instant,
        shard: u32,
        epoch: u64,
        out: &mut Vec<Action>,
    ) {
        if let Some(slot) = self.slots.get_mut(shard as usize) {
            slot.state = State::NotOwned;
        }
        out.push(Action::Released { shard, epoch });
        let to = self
            .assignment
            .as_ref()
            .and_then(|a| a.owner(shard))
            .filter(|o| **o != self.me)
            .map_or(0, crate::recipient_id);
        out.push(Action::Broadcast(ReleaseNotice {
            service: self.cfg.service.clone(),
            shard,
            epoch,
            from: self.me.clone(),
            to,
        }));
        // The view may have given the shard back meanwhile; we just held
        // it, so only the barrier can tell that nobody took it since.
        let mine = self.majority.has_majority()
            && self
                .assignment
                .as_ref()
                .and_then(|a: &Assignment| a.owner(shard))
                == Some(&self.me);
        let me = Some(self.me.clone());
        self.reconcile(now, shard, mine, me, out);
        self.acquire_ready(now, out);
    }
}

/// Starts giving up a shard this member should not hold.
fn give_up(shard: u32, slot: &mut Slot, out: &mut Vec<Action>) {
    let reject = |slot: &mut Slot, out: &mut Vec<Action>| {
        if slot.held > 0 {
            slot.held = 0;
            out.push(Action::RejectHeld { shard });
        }
    };
    match slot.state {
        State::Serving { epoch } => {
            slot.state = State::Releasing {
                epoch,
                step: Step::Draining,
            };
            out.push(Action::Drain { shard });
        }
        State::Acquiring { ref call, .. } => {
            let next = match *call {
                Call::Idle => State::NotOwned,
                Call::InFlight { epoch } => State::Releasing {
                    epoch,
                    step: Step::AfterAcquire,
                },
                // A failed acquire may still have loaded the shard: release.
                Call::RetryAt { epoch, .. } => {
                    out.push(Action::CallRelease { shard, epoch });
                    State::Releasing {
                        epoch,
                        step: Step::InFlight,
                    }
                }
            };
            slot.state = next;
            reject(slot, out);
        }
        State::Releasing { .. } | State::NotOwned => {}
    }
}
