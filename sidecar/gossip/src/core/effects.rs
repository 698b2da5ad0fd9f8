//! foca's `Runtime` (collects what foca wants done) and the Lifeguard layer
//! applied to it: timers are stretched by the local health, suspicions get a
//! confirmation-counted timeout, relayed probes are nacked, and packets to a
//! suspect carry the buddy flag.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Header, Member, Message, Notification, OwnedNotification, Runtime, State, Timer};

use super::{inspect, Core, CoreTimer, Output};
use crate::id::NodeId;
use crate::lifeguard::{LocalHealth, SuspicionTimeout};
use crate::observer::ProbeResult;
use crate::wire::{self, Item, Wire};

/// What foca asked for during one call.
#[derive(Default)]
pub(crate) struct Effects {
    sends: Vec<(NodeId, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notes: Vec<OwnedNotification<NodeId>>,
}

/// A scheduled timer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) at: Duration,
    pub(crate) seq: u64,
    pub(crate) timer: CoreTimer,
}

/// A suspicion this member raised and may confirm down.
#[derive(Debug)]
pub(crate) struct Suspicion {
    member: NodeId,
    incarnation: u16,
    token: foca::TimerToken,
    start: Duration,
    bounds: SuspicionTimeout,
    confirmations: HashSet<SocketAddr>,
}

/// Failed probes in a row whose indirect helpers all stayed silent (no ack,
/// no nack) after which this member issues no down verdict: it is most
/// likely the one cut off, not everyone it probes.
const ISOLATED_AFTER: u32 = 2;

/// The probe in flight, for acks, nacks and the local health.
#[derive(Debug)]
pub(crate) struct ProbeState {
    target: NodeId,
    number: foca::ProbeNumber,
    acked: bool,
    indirect: Vec<SocketAddr>,
    responses: u32,
}

// === impl Suspicion ===

impl Suspicion {
    pub(crate) fn member(&self) -> NodeId {
        self.member
    }

    pub(crate) fn incarnation(&self) -> u16 {
        self.incarnation
    }
}

// === impl Effects ===

impl Runtime<NodeId> for Effects {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.timers.is_empty() && self.notes.is_empty()
    }
}

// === impl Entry ===

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

// === impl Core: effects ===

impl Core {
    /// Carries out everything foca asked for, then drains accepted broadcasts.
    pub(super) fn settle(&mut self) {
        while !self.fx.is_empty() {
            let fx = std::mem::take(&mut self.fx);
            for note in fx.notes {
                self.on_notification(note);
            }
            for (after, timer) in fx.timers {
                self.schedule_foca(after, timer);
            }
            for (to, data) in fx.sends {
                self.on_send(to, data);
            }
        }
        let (apps, confirms, metas_dirty) = {
            let mut t = self.tables.lock();
            let dirty = std::mem::take(&mut t.metas_dirty);
            (
                std::mem::take(&mut t.app_inbox),
                std::mem::take(&mut t.confirm_inbox),
                dirty,
            )
        };
        self.view_dirty |= metas_dirty;
        for (from, data) in apps {
            self.out.push_back(Output::App { from, data });
        }
        for (target, incarnation, from) in confirms {
            self.on_confirm(target, incarnation, from);
        }
        self.retune();
    }

    fn on_notification(&mut self, note: OwnedNotification<NodeId>) {
        match note {
            OwnedNotification::MemberDown(member) => {
                self.touched.push(member.addr);
                if self.downs.len() >= super::MAX_DOWNS_KEPT {
                    self.downs.pop_front();
                }
                self.downs.push_back(super::DownVerdict {
                    member,
                    by_self: self.declaring,
                });
            }
            OwnedNotification::MemberUp(member) => self.touched.push(member.addr),
            OwnedNotification::Rename(..) => self.dirty = true,
            OwnedNotification::Active => {
                self.joined = true;
                self.view_dirty = true;
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => {
                self.joined = false;
                self.view_dirty = true;
            }
            OwnedNotification::Rejoin(new_id) => {
                tracing::info!(
                    generation = new_id.generation,
                    "declared down by the cluster; rejoined"
                );
                self.id = new_id;
                self.self_incarnation = 0;
                self.tables.lock().local = Some(new_id.addr);
                if !self.left {
                    self.announce_meta();
                }
            }
        }
    }

    fn schedule_foca(&mut self, after: Duration, timer: Timer<NodeId>) {
        match &timer {
            Timer::ProbeRandomMember(token)
            | Timer::SendIndirectProbe { token, .. }
            | Timer::ChangeSuspectToDown { token, .. }
            | Timer::PeriodicAnnounce(token)
            | Timer::PeriodicAnnounceDown(token)
            | Timer::PeriodicGossip(token) => self.foca_token = Some(*token),
            Timer::RemoveDown(_) => {}
        }
        if !self.timing.lifeguard {
            if let Timer::ChangeSuspectToDown { .. } = timer {
                self.note_probe_failed(None);
                self.observer.suspicion();
            }
            self.schedule(after, CoreTimer::Foca(timer));
            return;
        }
        match timer {
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                let after = self.health.scale(after);
                self.schedule(after, CoreTimer::Foca(timer));
            }
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                token,
            } => self.on_probe_failed(member_id, incarnation, token),
            other => self.schedule(after, CoreTimer::Foca(other)),
        }
    }

    fn on_send(&mut self, to: NodeId, data: Vec<u8>) {
        if let Some(header) = inspect::header(&data) {
            self.track_outgoing(&header);
        }
        let buddy = match self.states.get(&to.addr) {
            Some((id, State::Suspect, inc)) if self.timing.lifeguard && *id == to => Some(*inc),
            _ => None,
        };
        let plain = wire::encode(&Wire::Swim {
            buddy,
            packet: data,
        });
        self.out.push_back(Output::Send { to: to.addr, plain });
    }

    fn track_outgoing(&mut self, header: &Header<NodeId>) {
        if header.src_incarnation != self.self_incarnation && header.src == self.id {
            self.self_incarnation = header.src_incarnation;
            self.view_dirty = true;
        }
        match &header.message {
            Message::Ping(number) => {
                if let Some(old) = self.probe.take() {
                    if !old.acked {
                        // foca reports failures through ChangeSuspectToDown; a probe
                        // replaced without that ended on a member no longer active.
                        tracing::trace!(target = ?old.target, "probe superseded");
                    }
                }
                self.probe = Some(ProbeState {
                    target: header.dst,
                    number: *number,
                    acked: false,
                    indirect: Vec::new(),
                    responses: 0,
                });
            }
            Message::PingReq { .. } => {
                if let Some(p) = self.probe.as_mut() {
                    p.indirect.push(header.dst.addr);
                }
            }
            _ => {}
        }
    }

    /// Lifeguard hooks on an incoming foca packet, before foca applies it.
    pub(super) fn before_swim(
        &mut self,
        header: &Header<NodeId>,
        updates: &[Member<NodeId>],
        buddy: Option<u16>,
    ) {
        if self.touched.len() > 4 * super::items::MAX_MEMBERS {
            // Nobody read the view for a long while: rebuild it when asked.
            self.touched.clear();
            self.dirty = true;
        }
        self.touched.extend(updates.iter().map(|m| m.id().addr));
        // foca applies "sender is alive at its header incarnation": only news
        // if the mirror does not already say exactly that.
        let known = matches!(self.states.get(&header.src.addr),
            Some((id, State::Alive, inc)) if *id == header.src && *inc == header.src_incarnation);
        if !known {
            self.touched.push(header.src.addr);
        }
        let lifeguard = self.timing.lifeguard;
        match &header.message {
            Message::Ack(n) => {
                if let Some(p) = self.probe.as_mut() {
                    if p.target == header.src && p.number == *n && !p.acked {
                        p.acked = true;
                        self.observer.probe(ProbeResult::Ack);
                        self.health.apply(-1);
                        self.silent_probes = 0;
                    }
                }
            }
            Message::ForwardedAck { probe_number, .. } => {
                if let Some(p) = self.probe.as_mut() {
                    if p.number == *probe_number && p.indirect.contains(&header.src.addr) {
                        p.responses += 1;
                        if !p.acked {
                            p.acked = true;
                            self.observer.probe(ProbeResult::IndirectAck);
                            self.health.apply(-1);
                            self.silent_probes = 0;
                        }
                    }
                }
            }
            Message::PingReq { target, .. } if lifeguard => {
                self.nack_watch.insert((header.src.addr, target.addr), ());
                let after = self.timing.probe_timeout.mul_f64(0.8);
                self.schedule(
                    after,
                    CoreTimer::Nack {
                        origin: header.src.addr,
                        target: *target,
                    },
                );
            }
            Message::IndirectAck { target, .. } => {
                self.nack_watch.remove(&(target.addr, header.src.addr));
            }
            _ => {}
        }
        let mut suspected_at = updates
            .iter()
            .filter(|m| m.id() == &self.id && m.state() == State::Suspect)
            .map(|m| m.incarnation())
            .max();
        if lifeguard {
            suspected_at = suspected_at.max(buddy);
        }
        if let Some(inc) = suspected_at {
            self.refute(inc);
        }
    }

    /// Refutes a suspicion of ourselves at incarnation `inc`, if it stands.
    pub(super) fn refute(&mut self, inc: u16) {
        if inc < self.self_incarnation || self.left {
            return;
        }
        self.observer.refutation();
        if self.timing.lifeguard {
            self.health.apply(1);
        }
        // The buddy flag is not a foca update: hand it to foca as one,
        // which bumps our incarnation and gossips the refutation.
        let update = Member::new(self.id, inc, State::Suspect);
        if let Err(e) = self
            .foca
            .apply_many(std::iter::once(update), true, &mut self.fx)
        {
            tracing::debug!(error = %e, "refutation failed");
        }
    }

    pub(super) fn on_nack(&mut self, from: SocketAddr, target: NodeId) {
        if let Some(p) = self.probe.as_mut() {
            if p.target.addr == target.addr && p.indirect.contains(&from) {
                p.responses += 1;
                // A helper reached us: we are not the one cut off.
                self.silent_probes = 0;
            }
        }
    }

    /// Lifeguard's bookkeeping for a failed probe (foca's or the ring
    /// watch's) that asked `helpers` members, of whom `responses` answered.
    pub(super) fn count_failed_probe(&mut self, helpers: usize, responses: u32) {
        if helpers > 0 && responses == 0 {
            self.silent_probes = self.silent_probes.saturating_add(1);
        }
        let helpers = u32::try_from(helpers).unwrap_or(u32::MAX);
        self.health
            .apply(LocalHealth::failed_probe_delta(helpers, responses));
    }

    fn note_probe_failed(&mut self, member: Option<NodeId>) {
        self.observer.probe(ProbeResult::Failed);
        let probe = match (&self.probe, member) {
            (Some(p), Some(m)) if p.target == m => self.probe.take(),
            (Some(_), None) => self.probe.take(),
            _ => None,
        };
        if self.timing.lifeguard {
            match probe {
                Some(p) => self.count_failed_probe(p.indirect.len(), p.responses),
                None => self.health.apply(1),
            }
        }
        match member {
            Some(m) => self.touched.push(m.addr),
            None => self.dirty = true,
        }
    }

    fn on_probe_failed(&mut self, member: NodeId, incarnation: u16, token: foca::TimerToken) {
        self.note_probe_failed(Some(member));
        self.raise_suspicion(member, incarnation, token);
    }

    /// Times a suspicion we hold ourselves: shrinks with confirmations,
    /// declares the member down through foca when it expires.
    pub(super) fn raise_suspicion(
        &mut self,
        member: NodeId,
        incarnation: u16,
        token: foca::TimerToken,
    ) {
        let n = self.foca.num_members() + 1;
        let bounds = SuspicionTimeout::for_cluster(
            n,
            self.timing.probe_interval,
            self.timing.suspicion_multiplier,
            self.timing.indirect_probes,
        );
        let same = matches!(self.suspicions.get(&member.addr),
            Some(s) if s.member == member && s.incarnation == incarnation);
        if same {
            if let Some(s) = self.suspicions.get_mut(&member.addr) {
                s.token = token;
            }
        } else {
            self.observer.suspicion();
            self.suspicions.insert(
                member.addr,
                Suspicion {
                    member,
                    incarnation,
                    token,
                    start: self.now,
                    bounds,
                    confirmations: HashSet::new(),
                },
            );
            // Tell the others we independently failed to reach it.
            let item = Item::Confirm {
                target: member,
                incarnation,
                from: self.id.addr,
            };
            if let Err(e) = self.foca.add_broadcast(&wire::encode_item(&item)) {
                tracing::debug!(error = %e, "cannot broadcast confirmation");
            }
            let first = self.timing.probe_interval / 2;
            self.schedule(first, CoreTimer::Recheck(member, incarnation));
        }
        self.reschedule_suspicion(member.addr);
    }

    fn on_confirm(&mut self, target: NodeId, incarnation: u16, from: SocketAddr) {
        let grew = match self.suspicions.get_mut(&target.addr) {
            Some(s)
                if s.member == target && s.incarnation == incarnation && from != self.id.addr =>
            {
                s.confirmations.len() < s.bounds.k as usize && s.confirmations.insert(from)
            }
            _ => false,
        };
        if grew {
            self.reschedule_suspicion(target.addr);
        }
    }

    fn reschedule_suspicion(&mut self, addr: SocketAddr) {
        if let Some(s) = self.suspicions.get(&addr) {
            let deadline = s.start + s.bounds.timeout(s.confirmations.len() as u32);
            let after = deadline.saturating_sub(self.now);
            self.schedule(after, CoreTimer::Suspicion(addr));
        }
    }

    /// Runs one timer.
    pub(super) fn fire(&mut self, timer: CoreTimer) {
        match timer {
            CoreTimer::Foca(t) => {
                let suspicion = match &t {
                    Timer::ChangeSuspectToDown { member_id, .. } => {
                        self.touched.push(member_id.addr);
                        true
                    }
                    Timer::RemoveDown(id) => {
                        self.touched.push(id.addr);
                        false
                    }
                    _ => false,
                };
                self.declaring = suspicion;
                if let Err(e) = self.foca.handle_timer(t, &mut self.fx) {
                    tracing::trace!(error = %e, "swim timer");
                }
                self.settle();
                self.declaring = false;
            }
            CoreTimer::Suspicion(addr) => {
                let Some(s) = self.suspicions.get(&addr) else {
                    return;
                };
                let deadline = s.start + s.bounds.timeout(s.confirmations.len() as u32);
                if self.now < deadline {
                    return; // a later entry for the same suspicion is queued
                }
                if self.timing.lifeguard && self.silent_probes >= ISOLATED_AFTER {
                    // Our probes keep failing and no helper even nacks: most
                    // likely this member is the one cut off. A down verdict
                    // from here would be false, and after a partition heals it
                    // would spread to the side that kept the majority (whose
                    // members would rejoin and drop their shards). Keep the
                    // member suspect and look again a probe interval later.
                    self.schedule(self.timing.probe_interval, CoreTimer::Suspicion(addr));
                    return;
                }
                let Some(s) = self.suspicions.remove(&addr) else {
                    return;
                };
                // foca answers an expired suspicion with TurnUndead even when the
                // member refuted it meanwhile (its down attempt fails, the
                // courtesy message goes out anyway), which makes a live member
                // rejoin under a new identity: a false death. Only hand foca
                // suspicions that still stand.
                if !self.is_suspect(s.member, s.incarnation) {
                    self.touched.push(addr);
                    return;
                }
                let t = Timer::ChangeSuspectToDown {
                    member_id: s.member,
                    incarnation: s.incarnation,
                    token: s.token,
                };
                self.touched.push(s.member.addr);
                self.declaring = true;
                if let Err(e) = self.foca.handle_timer(t, &mut self.fx) {
                    tracing::trace!(error = %e, "suspicion timer");
                }
                self.settle();
                self.declaring = false;
            }
            CoreTimer::Nack { origin, target } => {
                if self.nack_watch.remove(&(origin, target.addr)).is_some() {
                    let plain = wire::encode(&Wire::Nack { target });
                    self.out.push_back(Output::Send { to: origin, plain });
                }
            }
            CoreTimer::PushPull => {
                self.start_push_pull();
                let next = self.push_pull_period();
                self.schedule(next, CoreTimer::PushPull);
            }
            CoreTimer::Watch => self.on_watch_timer(),
            CoreTimer::CheckResend(nonce) => self.on_check_resend(nonce),
            CoreTimer::CheckExpired(nonce) => self.on_check_expired(nonce),
            CoreTimer::IndirectExpired(nonce) => self.on_indirect_expired(nonce),
            CoreTimer::Recheck(member, incarnation) => self.on_recheck(member, incarnation),
        }
    }

    fn start_push_pull(&mut self) {
        use rand::seq::IteratorRandom;
        let to = self
            .foca
            .iter_members()
            .map(|m| m.id().addr)
            .choose(&mut self.rng);
        if let Some(to) = to {
            self.out.push_back(Output::PushPull { to });
        }
    }

    /// Retunes foca's retransmit limit to the cluster size as it changes.
    fn retune(&mut self) {
        let n = self.foca.num_members() + 1;
        let changed = n > self.tuned_for.saturating_mul(2) || n.saturating_mul(2) < self.tuned_for;
        if changed {
            self.tuned_for = n;
            let config = super::foca_config(&self.timing, n);
            if let Err(e) = self.foca.set_config(config) {
                tracing::debug!(error = %e, "cannot retune swim config");
            }
        }
    }
}
