//! The handoff state machine of one member for one service, sans-IO: every
//! input takes the current time and returns the [`Action`]s to carry out.
//!
//! Per shard: `NotOwned` → `Acquiring` (requests held) → `Serving` →
//! `Releasing` (drain, app release, gossip the release) → `NotOwned`.
//!
//! An acquisition calls the app only once nobody else can hold the shard:
//! - the previous owner (in this member's previous view) gossiped that it
//!   released the shard to this member, or
//! - the previous owner is dead, left, or gone from the view (at once), or
//! - every other owning member advertises (gossip tag [`crate::SETTLED_TAG`])
//!   that it settled on the same view: it holds no shard it does not own in
//!   it. This barrier covers lost notices and views that skipped a step.
//!
//! A member only calls the app acquire after that wait, so it is the one
//! possible holder; its release notice therefore frees the shard.
//! Epochs only grow: a new epoch is one more than the largest epoch this
//! member has seen anywhere (its own, release notices, and every member's
//! [`crate::EPOCH_TAG`]), so it exceeds every epoch of the shard.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::notice::{MAX_MEMBER_LEN, MAX_SERVICE_LEN};
use crate::{Assignment, KeepMajority, MemberId, Peer, ReleaseNotice};

mod slot;
mod types;

use slot::{Call, Slot, State, Step, Wait};
pub use types::{
    Action, Callback, ConfigError, HandoffConfig, Outcome, Route, ShardState, MAX_SHARDS,
};

/// One member's shard table for its service: ownership, handoff and
/// keep-majority, driven by the sidecar.
#[derive(Clone, Debug)]
pub struct ShardTable {
    /// Settings.
    cfg: HandoffConfig,
    /// This member.
    me: MemberId,
    /// Keep-majority over the service's stable membership.
    majority: KeepMajority,
    /// The current view of the service, by id.
    peers: BTreeMap<MemberId, Peer>,
    /// Id of the owning members of the current view.
    view: u64,
    /// Ownership in the current view; `None` before the first view.
    assignment: Option<Assignment>,
    /// One per shard.
    slots: Vec<Slot>,
    /// The largest epoch seen anywhere; new epochs exceed it.
    max_epoch: u64,
    /// The first time an epoch was chosen, the base of the epoch floor clock.
    clock_base: Option<Instant>,
    /// Set by [`Self::leave`] (with its time): own nothing, release
    /// everything once the others settled on the view without this member
    /// (or after [`HandoffConfig::leave_wait`]).
    leaving: Option<Instant>,
    /// The view says the others declared this member dead (or left): they
    /// are taking its shards, so it must own nothing until it is back.
    declared_gone: bool,
    /// Members dead in the view, with when this member (reaching a
    /// majority) first saw them so, `None` once the margin ran out; see
    /// [`HandoffConfig::dead_owner_margin`].
    dead_since: BTreeMap<MemberId, Option<Instant>>,
}

// === impl ShardTable ===

impl ShardTable {
    /// A table for member `me`, owning nothing until the first view.
    ///
    /// Fails on a shard count outside `1..=MAX_SHARDS` or a member id or
    /// service name too long for release notices, so memory stays bounded
    /// and every notice can be sent.
    pub fn new(me: MemberId, cfg: HandoffConfig) -> Result<Self, ConfigError> {
        if cfg.shards == 0 || cfg.shards > MAX_SHARDS {
            return Err(ConfigError::Shards(cfg.shards));
        }
        if cfg.service.is_empty() || cfg.service.len() > MAX_SERVICE_LEN {
            return Err(ConfigError::Service);
        }
        if me.as_str().is_empty() || me.as_str().len() > MAX_MEMBER_LEN {
            return Err(ConfigError::Member);
        }
        Ok(Self {
            majority: KeepMajority::new(cfg.stable_after),
            slots: vec![Slot::new(); cfg.shards as usize],
            cfg,
            me,
            peers: BTreeMap::new(),
            view: 0,
            assignment: None,
            max_epoch: 0,
            clock_base: None,
            leaving: None,
            declared_gone: false,
            dead_since: BTreeMap::new(),
        })
    }

    /// Input: the service's current membership (from gossip, with tags).
    ///
    /// Feed the first view only once gossip has joined the cluster (or a
    /// first member found no seed): a view of just this member owns
    /// everything. If `peers` says this member is dead or left (the others
    /// declared it so and are taking its shards), it gives up every shard
    /// until a view shows it alive again; otherwise it counts as alive
    /// (its own `leaving` state is [`Self::leave`]'s business).
    pub fn on_membership(&mut self, now: Instant, peers: &[Peer]) -> Vec<Action> {
        self.declared_gone = peers
            .iter()
            .any(|p| p.id == self.me && !p.health.may_hold_shards());
        self.peers = peers.iter().map(|p| (p.id.clone(), p.clone())).collect();
        let me = Peer::new(self.me.clone(), crate::Health::Alive);
        self.peers.insert(self.me.clone(), me);
        let tags = self.peers.values().map(|p| p.epoch).max().unwrap_or(0);
        self.max_epoch = self.max_epoch.max(tags);
        let view: Vec<Peer> = self.peers.values().cloned().collect();
        self.majority.observe(now, &view);
        self.track_dead(now);
        let mut out = Vec::new();
        self.recompute(now, &mut out);
        out
    }

    /// Input: a release notice received through gossip.
    pub fn on_release_notice(&mut self, now: Instant, notice: &ReleaseNotice) -> Vec<Action> {
        let mut out = Vec::new();
        if notice.service != self.cfg.service || notice.from == self.me {
            return out;
        }
        self.max_epoch = self.max_epoch.max(notice.epoch);
        if notice.to != crate::recipient_id(&self.me) {
            // Released to another member: only the barrier can tell when
            // that one is done with it.
            return out;
        }
        if let Some(slot) = self.slots.get_mut(notice.shard as usize) {
            if slot.notice.as_ref().is_none_or(|(_, e)| notice.epoch >= *e) {
                slot.notice = Some((notice.from.clone(), notice.epoch));
            }
            // Released to us at an epoch newer than the one we serve: the
            // sender held the shard after our term began (we were paused or
            // cut off while it took over), so our term is void. Its notice
            // frees the shard: take it again at a fresh epoch.
            if matches!(slot.state, State::Serving { epoch } if epoch < notice.epoch) {
                slot.state = State::Acquiring {
                    since: now,
                    wait: Wait::Owner(notice.from.clone()),
                    call: Call::Idle,
                };
                out.push(Action::TermLost {
                    shard: notice.shard,
                });
            }
        }
        self.acquire_ready(now, &mut out);
        out
    }

    /// Input: the cluster declared this member dead and it rejoined under a
    /// new generation (gossip's automatic rejoin after a pause, a GC stall
    /// or a lost partition). Every shard it serves may have been acquired
    /// by another member meanwhile, so every term held here is void: each
    /// shard this member still owns is acquired again at a fresh epoch once
    /// the settled barrier shows that nobody else holds it, and the app
    /// replays its state. Without this, a resumed member kept serving on
    /// epochs the app had fenced, and every request for its shards failed.
    pub fn rejoined(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for (shard, slot) in (0u32..).zip(self.slots.iter_mut()) {
            if matches!(slot.state, State::Serving { .. }) {
                void_term(now, shard, slot, &mut out);
            }
        }
        self.recompute(now, &mut out);
        out
    }

    /// Input: the app refused a request for `shard` sent at `epoch`
    /// because it does not hold the shard at that epoch (another owner
    /// acquired it since, the app restarted and lost it, or its log
    /// failed). That is an ownership signal, not a failure of this pod:
    /// if the shard is served here at that epoch, the term is over, and the
    /// shard is acquired again at a fresh epoch once the settled barrier
    /// shows that nobody else holds it. Answers for other epochs (older
    /// terms, or a term already replaced) change nothing.
    pub fn fenced(&mut self, now: Instant, shard: u32, epoch: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(slot) = self.slots.get_mut(shard as usize) else {
            return out;
        };
        if matches!(slot.state, State::Serving { epoch: e } if e == epoch) {
            void_term(now, shard, slot, &mut out);
            self.acquire_ready(now, &mut out);
        }
        out
    }

    /// Input: an app callback asked for by [`Action::CallAcquire`] or
    /// [`Action::CallRelease`] finished. Stale answers are ignored.
    pub fn callback_done(
        &mut self,
        now: Instant,
        kind: Callback,
        shard: u32,
        epoch: u64,
        outcome: Outcome,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let retry_at = now + self.cfg.retry_after;
        let done = outcome != Outcome::Failed;
        let Some(slot) = self.slots.get_mut(shard as usize) else {
            return out;
        };
        match (kind, &mut slot.state) {
            (Callback::Acquire, State::Acquiring { since, call, .. })
                if *call == (Call::InFlight { epoch }) =>
            {
                if done {
                    let took = now.saturating_duration_since(*since);
                    slot.state = State::Serving { epoch };
                    out.push(Action::Acquired { shard, epoch, took });
                    if slot.held > 0 {
                        slot.held = 0;
                        out.push(Action::ServeHeld { shard, epoch });
                    }
                } else {
                    *call = Call::RetryAt {
                        epoch,
                        at: retry_at,
                    };
                }
            }
            (Callback::Acquire, State::Releasing { epoch: e, step })
                if *e == epoch && *step == Step::AfterAcquire =>
            {
                // Whatever the answer, the app may hold it: release it.
                *step = Step::InFlight;
                out.push(Action::CallRelease { shard, epoch });
            }
            (Callback::Release, State::Releasing { epoch: e, step })
                if *e == epoch && *step == Step::InFlight =>
            {
                if done {
                    self.finish_release(now, shard, epoch, &mut out);
                } else {
                    *step = Step::RetryAt { at: retry_at };
                }
            }
            _ => {}
        }
        out
    }

    /// Input: no request for `shard` is in flight any more (after
    /// [`Action::Drain`]).
    pub fn drained(&mut self, _now: Instant, shard: u32) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(slot) = self.slots.get_mut(shard as usize) {
            if let State::Releasing { epoch, step } = &mut slot.state {
                if *step == Step::Draining {
                    *step = Step::InFlight;
                    out.push(Action::CallRelease {
                        shard,
                        epoch: *epoch,
                    });
                }
            }
        }
        out
    }

    /// Input: time passed; call at [`Self::next_deadline`] or periodically.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let had = self.majority.has_majority();
        self.majority.tick(now);
        self.track_dead(now);
        if had != self.majority.has_majority() {
            self.recompute(now, &mut out);
        }
        if self.leave_pending() && self.others_settled_without_me(now) {
            // The leave wait is over: hand off what is still served.
            self.recompute(now, &mut out);
        }
        let hold = self.cfg.hold_timeout;
        for (shard, slot) in (0u32..).zip(self.slots.iter_mut()) {
            match &mut slot.state {
                State::Acquiring { since, call, .. } => {
                    if slot.held > 0 && now >= *since + hold {
                        slot.held = 0;
                        out.push(Action::RejectHeld { shard });
                    }
                    if let Call::RetryAt { epoch, at } = *call {
                        if now >= at {
                            *call = Call::InFlight { epoch };
                            out.push(Action::CallAcquire { shard, epoch });
                        }
                    }
                }
                State::Releasing { epoch, step } => {
                    if matches!(step, Step::RetryAt { at } if now >= *at) {
                        *step = Step::InFlight;
                        out.push(Action::CallRelease {
                            shard,
                            epoch: *epoch,
                        });
                    }
                }
                State::NotOwned | State::Serving { .. } => {}
            }
        }
        self.acquire_ready(now, &mut out);
        out
    }

    /// Input: this member is shutting down gracefully (it gossips the
    /// `leaving` state, which the others feed in as [`crate::Health::Leaving`]):
    /// own nothing and release every shard to its new owner, then leave
    /// gossip once [`Self::is_released`].
    ///
    /// The shards it serves are released only once every other member that
    /// may hold shards advertises it settled on the view without this member
    /// (so callers route to the new owners, who hold requests until the
    /// release notice), or after [`HandoffConfig::leave_wait`]. Until then it
    /// keeps serving them: requests from callers with an older view still
    /// succeed instead of bouncing between two members that each think the
    /// other owns the shard.
    pub fn leave(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.leaving.is_none() {
            self.leaving = Some(now);
        }
        self.recompute(now, &mut out);
        out
    }

    /// Query: where a request for `shard` goes. Counts held requests, so
    /// call it once per request.
    pub fn route(&mut self, now: Instant, shard: u32) -> Route {
        let has_majority = self.majority.has_majority();
        let owner = self.owner(shard).cloned();
        let Some(slot) = self.slots.get_mut(shard as usize) else {
            return Route::NoOwner;
        };
        if !has_majority {
            return Route::NoOwner;
        }
        match &slot.state {
            State::Serving { epoch } => Route::Local { epoch: *epoch },
            State::Acquiring { since, .. } => {
                if now < *since + self.cfg.hold_timeout && slot.held < self.cfg.max_held {
                    slot.held += 1;
                    Route::Hold
                } else {
                    Route::NoOwner
                }
            }
            State::Releasing { .. } | State::NotOwned => match owner {
                Some(o) if o != self.me => Route::Forward(o),
                _ => Route::NoOwner,
            },
        }
    }
}

/// Ends the term of a shard served here: it is acquired again at a fresh
/// epoch once the settled barrier shows that nobody else holds it.
fn void_term(now: Instant, shard: u32, slot: &mut Slot, out: &mut Vec<Action>) {
    slot.notice = None;
    slot.state = State::Acquiring {
        since: now,
        wait: Wait::Barrier,
        call: Call::Idle,
    };
    out.push(Action::TermLost { shard });
}

mod margin;
mod queries;
mod recompute;

#[cfg(test)]
mod tests;
