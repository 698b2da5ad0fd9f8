//! Checks beside foca's random probing, all part of the Lifeguard layer:
//!
//! - **Ring watch.** Each member also checks its successor on a hash ring of
//!   the active members once a probe period. With random probing alone,
//!   nobody picks a crashed member for `k` periods with probability about
//!   `e^-k`, which left a tail of 6 s and more before the first suspicion
//!   at N = 1,000. With the ring every member is checked about once a
//!   period, so a crash is suspected within about two periods.
//! - **Verification.** A member that hears of a suspicion checks the suspect
//!   itself, sampled so that about [`VERIFIERS`] members do. Failing to
//!   reach it is an independent Lifeguard confirmation, so the suspicion
//!   timeout shrinks to its floor within a probe timeout instead of about one
//!   confirmation per period. The check carries the buddy flag, so a live
//!   suspect learns of the suspicion at once and refutes.
//! - **Rechecks.** A member holding a suspicion of its own checks the suspect
//!   every period, through helpers when the direct check fails. Answers carry
//!   the member's incarnation, so they refute even when gossip never brings
//!   the refutation (or a one-way cut keeps the suspect's packets away).
//!
//! Only members that advertise [`CHECKS_TAG`] are checked.
//!
//! A check is a direct ping with one resend half way through the timeout.
//! The ring watch falls back to `indirect_probes` helpers, each of which
//! checks the target directly and replies either way (an ack or a nack).
//!
//! foca has no hook for either (its probe target is its own random
//! round-robin and it cannot be asked to probe a given member), so the
//! messages live in our own wire layer and a failed watch enters foca as a
//! suspicion update, as if gossiped.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Member, State};

use super::{Core, CoreTimer, Output};
use crate::id::NodeId;
use crate::meta::{MemberMeta, MAX_META_TAGS};
use crate::observer::ProbeResult;
use crate::wire::{self, Item, Wire};

/// Metadata tag by which a member says it answers checks. A member without
/// it (an older build, or one whose tags are full) is neither watched nor
/// verified: it would drop our checks as malformed and look dead. So a
/// rolling upgrade mixes builds safely; such members get foca's probes only.
pub const CHECKS_TAG: &str = "shardmesh.io/gossip-checks";

/// About how many members verify each suspicion they hear of.
const VERIFIERS: usize = 8;
/// Checks in flight at once (our own plus those relayed for others).
const MAX_PENDING: usize = 1024;
/// Suspicions remembered as already verified (cleared when full).
const MAX_VERIFIED: usize = 4096;

/// Checks in flight and the current ring-watch round.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    next_nonce: u64,
    pending: HashMap<u64, Pending>,
    watch: Option<WatchRound>,
    /// Indirect checks in flight (ring watch and rechecks): nonce -> target.
    asked: HashMap<u64, NodeId>,
    verified: HashSet<(NodeId, u16)>,
}

/// One direct check in flight.
#[derive(Debug)]
struct Pending {
    target: NodeId,
    purpose: Purpose,
    buddy: Option<u16>,
}

/// Why a check was sent.
#[derive(Clone, Copy, Debug)]
enum Purpose {
    /// Our ring successor, this period.
    Watch,
    /// A suspicion we heard of, at this incarnation.
    Verify { incarnation: u16 },
    /// On behalf of `origin`, which sent us a `CheckReq` with `nonce`.
    Relay { origin: SocketAddr, nonce: u64 },
    /// A member we suspect ourselves: its answer refutes our suspicion even
    /// when gossip fails to bring us the refutation.
    Recheck,
}

/// The ring watch of one period.
#[derive(Debug)]
struct WatchRound {
    nonce: u64,
    started: Duration,
    target: NodeId,
    helpers: Vec<SocketAddr>,
    replies: u32,
    done: bool,
}

/// Where `addr` sits on the watch ring: FNV-1a over its bytes, so every
/// member (and every build) computes the same ring.
pub(crate) fn ring_point(addr: &SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match addr.ip() {
        std::net::IpAddr::V4(ip) => eat(&ip.octets()),
        std::net::IpAddr::V6(ip) => eat(&ip.octets()),
    }
    eat(&addr.port().to_be_bytes());
    h
}

/// Adds [`CHECKS_TAG`] to our own metadata when there is room for it.
pub(crate) fn advertise_checks(meta: &mut MemberMeta) {
    if meta.tags.len() < MAX_META_TAGS {
        meta.tags.insert(CHECKS_TAG.to_string(), "1".to_string());
        if meta.validate().is_err() {
            meta.tags.remove(CHECKS_TAG);
        }
    }
}

/// The member after `me` on the ring, among the `members` that `keep`
/// accepts. `keep` is asked only about members closer than the best so far
/// (about ln N of them), since it may cost a lookup.
pub(crate) fn successor(
    me: &SocketAddr,
    members: impl Iterator<Item = NodeId>,
    mut keep: impl FnMut(&NodeId) -> bool,
) -> Option<NodeId> {
    let mine = ring_point(me);
    let mut best: Option<((u64, SocketAddr), NodeId)> = None;
    for m in members.filter(|m| m.addr != *me) {
        let key = (ring_point(&m.addr).wrapping_sub(mine), m.addr);
        if best.as_ref().is_some_and(|(b, _)| *b <= key) {
            continue;
        }
        if keep(&m) {
            best = Some((key, m));
        }
    }
    best.map(|(_, m)| m)
}

// === impl Core: checks ===

impl Core {
    /// Starts the ring watch (called once, at construction, with Lifeguard on).
    pub(super) fn start_watch(&mut self, first: Duration) {
        self.schedule(first, CoreTimer::Watch);
    }

    /// The periodic ring-watch timer.
    pub(super) fn on_watch_timer(&mut self) {
        let period = self.health.scale(self.timing.probe_interval);
        self.schedule(period, CoreTimer::Watch);
        if !self.joined || self.left {
            return;
        }
        // A round that failed directly ends when its helpers' time is up,
        // which can be this very instant: let it finish first. A round
        // older than two periods is dropped (nothing keeps one alive longer).
        let busy = self.checks.watch.as_ref().is_some_and(|w| {
            !w.done && self.now.saturating_sub(w.started) < period.saturating_mul(2)
        });
        if busy {
            return;
        }
        let target = {
            let t = self.tables.lock();
            let members = self.foca.iter_members().map(|m| *m.id());
            successor(&self.id.addr, members, |id| t.answers_checks.contains(id))
        };
        let Some(target) = target else {
            return;
        };
        let buddy = match self.states.get(&target.addr) {
            Some((id, State::Suspect, inc)) if *id == target => Some(*inc),
            _ => None,
        };
        if let Some(nonce) = self.start_check(target, Purpose::Watch, buddy) {
            self.checks.watch = Some(WatchRound {
                nonce,
                started: self.now,
                target,
                helpers: Vec::new(),
                replies: 0,
                done: false,
            });
        }
    }

    /// Verifies suspicions of others carried by an incoming packet.
    pub(super) fn verify_heard(&mut self, updates: &[Member<NodeId>]) {
        if !self.timing.lifeguard || !self.joined || self.left {
            return;
        }
        for m in updates {
            if m.state() != State::Suspect || m.id().addr == self.id.addr {
                continue;
            }
            let key = (*m.id(), m.incarnation());
            if self.suspicions.contains_key(&key.0.addr) || self.checks.verified.contains(&key) {
                continue;
            }
            if self.checks.verified.len() >= MAX_VERIFIED {
                self.checks.verified.clear();
            }
            self.checks.verified.insert(key);
            let n = self.foca.num_members().max(1);
            let p = (VERIFIERS as f64 / n as f64).min(1.0);
            let pick = {
                use rand::RngExt;
                self.rng.random::<f64>() < p
            };
            if pick && self.answers_checks(*m.id()) {
                let purpose = Purpose::Verify {
                    incarnation: m.incarnation(),
                };
                self.start_check(*m.id(), purpose, Some(m.incarnation()));
            }
        }
    }

    /// Handles our own wire messages other than foca packets and nacks.
    pub(super) fn on_check_message(&mut self, from: SocketAddr, msg: Wire) {
        match msg {
            Wire::Check { nonce, buddy } => {
                if self.left {
                    return;
                }
                if let Some(inc) = buddy {
                    if self.timing.lifeguard {
                        self.refute(inc);
                        // Sends what the refutation queued, which updates our
                        // incarnation to the one the answer must carry.
                        self.settle();
                    }
                }
                let plain = wire::encode(&Wire::CheckAck {
                    nonce,
                    id: self.id,
                    incarnation: self.self_incarnation,
                });
                self.out.push_back(Output::Send { to: from, plain });
            }
            Wire::CheckAck {
                nonce,
                id,
                incarnation,
            } => {
                let ours = matches!(self.checks.pending.get(&nonce),
                    Some(p) if p.target.addr == from && p.target == id);
                if let Some(p) = ours.then(|| self.checks.pending.remove(&nonce)).flatten() {
                    self.apply_alive(id, incarnation);
                    self.check_done(nonce, p, Some(incarnation));
                }
            }
            Wire::CheckReq { target, nonce } => {
                if !self.timing.lifeguard || self.left || target.addr == self.id.addr {
                    return;
                }
                let origin = from;
                self.start_check(target, Purpose::Relay { origin, nonce }, None);
            }
            Wire::CheckReply {
                target,
                nonce,
                incarnation,
            } => self.on_check_reply(from, target, nonce, incarnation),
            Wire::Swim { .. } | Wire::Nack { .. } => {}
        }
    }

    /// Resends a check still unanswered.
    pub(super) fn on_check_resend(&mut self, nonce: u64) {
        if let Some(p) = self.checks.pending.get(&nonce) {
            let (to, buddy) = (p.target.addr, p.buddy);
            self.send_check(to, nonce, buddy);
        }
    }

    /// A check's time ran out.
    pub(super) fn on_check_expired(&mut self, nonce: u64) {
        if let Some(p) = self.checks.pending.remove(&nonce) {
            self.check_done(nonce, p, None);
        }
    }

    /// The helpers asked to check a member had their time; for the ring
    /// watch, nobody reaching the member makes it suspect.
    pub(super) fn on_indirect_expired(&mut self, nonce: u64) {
        self.checks.asked.remove(&nonce);
        let Some(round) = self.checks.watch.take_if(|w| w.nonce == nonce && !w.done) else {
            return;
        };
        self.observer.probe(ProbeResult::Failed);
        self.count_failed_probe(round.helpers.len(), round.replies);
        self.suspect_unreached(round.target);
    }

    /// Checks a member we still suspect ourselves, once a probe period.
    pub(super) fn on_recheck(&mut self, member: NodeId, incarnation: u16) {
        let stands = matches!(self.suspicions.get(&member.addr),
            Some(s) if s.member() == member && s.incarnation() == incarnation);
        if !stands || !self.answers_checks(member) {
            return; // refuted, declared, replaced, or an older build
        }
        self.start_check(member, Purpose::Recheck, Some(incarnation));
        let period = self.health.scale(self.timing.probe_interval);
        self.schedule(period, CoreTimer::Recheck(member, incarnation));
    }

    fn start_check(&mut self, target: NodeId, purpose: Purpose, buddy: Option<u16>) -> Option<u64> {
        if self.checks.pending.len() >= MAX_PENDING {
            return None;
        }
        self.checks.next_nonce = self.checks.next_nonce.wrapping_add(1);
        let nonce = self.checks.next_nonce;
        self.checks.pending.insert(
            nonce,
            Pending {
                target,
                purpose,
                buddy,
            },
        );
        self.send_check(target.addr, nonce, buddy);
        let timeout = match purpose {
            // A helper answers before the origin gives up on it.
            Purpose::Relay { .. } => self.timing.probe_timeout.mul_f64(0.8),
            Purpose::Watch | Purpose::Verify { .. } | Purpose::Recheck => self.timing.probe_timeout,
        };
        let timeout = self.health.scale(timeout);
        self.schedule(timeout / 2, CoreTimer::CheckResend(nonce));
        self.schedule(timeout, CoreTimer::CheckExpired(nonce));
        Some(nonce)
    }

    fn send_check(&mut self, to: SocketAddr, nonce: u64, buddy: Option<u16>) {
        let plain = wire::encode(&Wire::Check { nonce, buddy });
        self.out.push_back(Output::Send { to, plain });
    }

    /// The member itself says it is alive at `incarnation` (directly or
    /// through a helper): foca takes that as it takes a packet header, which
    /// refutes any suspicion of an older incarnation.
    fn apply_alive(&mut self, id: NodeId, incarnation: u16) {
        let alive = Member::new(id, incarnation, State::Alive);
        if let Err(e) = self
            .foca
            .apply_many(std::iter::once(alive), true, &mut self.fx)
        {
            tracing::debug!(error = %e, "check answer not applied");
        }
        self.touched.push(id.addr);
    }

    /// `answer` is the target's incarnation if it answered in time.
    fn check_done(&mut self, nonce: u64, p: Pending, answer: Option<u16>) {
        let reached = answer.is_some();
        match p.purpose {
            Purpose::Watch => {
                let Some(round) = self.checks.watch.as_mut().filter(|w| w.nonce == nonce) else {
                    return;
                };
                if reached {
                    round.done = true;
                    self.observer.probe(ProbeResult::Ack);
                    self.silent_probes = 0;
                } else {
                    self.ask_helpers(nonce, p.target);
                }
            }
            Purpose::Verify { incarnation } => {
                // An unhealthy member's failures say more about itself than
                // about the suspect: only a healthy one confirms.
                if !reached && self.health.score() == 0 && self.is_suspect(p.target, incarnation) {
                    let item = Item::Confirm {
                        target: p.target,
                        incarnation,
                        from: self.id.addr,
                    };
                    if let Err(e) = self.foca.add_broadcast(&wire::encode_item(&item)) {
                        tracing::debug!(error = %e, "cannot broadcast confirmation");
                    }
                }
            }
            Purpose::Recheck => {
                // Our own link to it may be what fails (a one-way cut):
                // helpers that reach it bring back its incarnation.
                if !reached {
                    self.ask_helpers(nonce, p.target);
                }
            }
            Purpose::Relay { origin, nonce } => {
                let plain = wire::encode(&Wire::CheckReply {
                    target: p.target,
                    nonce,
                    incarnation: answer,
                });
                self.out.push_back(Output::Send { to: origin, plain });
            }
        }
    }

    fn ask_helpers(&mut self, nonce: u64, target: NodeId) {
        use rand::seq::IteratorRandom;
        if self.checks.asked.len() >= MAX_PENDING {
            return;
        }
        let k = self.timing.indirect_probes as usize;
        let me = self.id.addr;
        let helpers: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .filter(|m| m.state() == State::Alive)
            .map(|m| m.id().addr)
            .filter(|a| *a != target.addr && *a != me)
            .sample(&mut self.rng, k);
        for &to in &helpers {
            let plain = wire::encode(&Wire::CheckReq { target, nonce });
            self.out.push_back(Output::Send { to, plain });
        }
        self.checks.asked.insert(nonce, target);
        if let Some(round) = self.checks.watch.as_mut().filter(|w| w.nonce == nonce) {
            round.helpers = helpers;
        }
        let wait = self.health.scale(self.timing.probe_timeout);
        self.schedule(wait, CoreTimer::IndirectExpired(nonce));
    }

    fn on_check_reply(
        &mut self,
        from: SocketAddr,
        target: NodeId,
        nonce: u64,
        incarnation: Option<u16>,
    ) {
        if self.checks.asked.get(&nonce) != Some(&target) {
            return;
        }
        if let Some(inc) = incarnation {
            self.apply_alive(target, inc);
        }
        let reached = incarnation.is_some();
        let Some(round) = self.checks.watch.as_mut() else {
            return;
        };
        if round.nonce != nonce || round.target != target || !round.helpers.contains(&from) {
            return;
        }
        round.replies += 1;
        // A helper reached us: we are not the one cut off.
        self.silent_probes = 0;
        if reached && !round.done {
            round.done = true;
            self.observer.probe(ProbeResult::IndirectAck);
        }
    }

    fn answers_checks(&self, member: NodeId) -> bool {
        self.tables.lock().answers_checks.contains(&member)
    }

    /// foca still holds `member` suspect at `incarnation`.
    pub(super) fn is_suspect(&self, member: NodeId, incarnation: u16) -> bool {
        self.foca.iter_membership_state().any(|m| {
            m.id() == &member && m.state() == State::Suspect && m.incarnation() == incarnation
        })
    }

    /// Our ring watch failed: suspect the member through foca (which
    /// gossips it) and time the suspicion as if foca's own probe had failed.
    fn suspect_unreached(&mut self, target: NodeId) {
        let current = self
            .foca
            .iter_members()
            .find(|m| m.id() == &target)
            .map(|m| (m.state(), m.incarnation()));
        let Some((state, incarnation)) = current else {
            return; // already down or replaced
        };
        let Some(token) = self.foca_token else {
            return;
        };
        if state == State::Alive {
            let update = Member::new(target, incarnation, State::Suspect);
            if let Err(e) = self
                .foca
                .apply_many(std::iter::once(update), true, &mut self.fx)
            {
                tracing::debug!(error = %e, "cannot raise suspicion");
                return;
            }
        }
        self.touched.push(target.addr);
        self.raise_suspicion(target, incarnation, token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16) -> NodeId {
        NodeId {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation: 1,
        }
    }

    #[test]
    fn successors_form_one_cycle() {
        let ids: Vec<NodeId> = (7000..7050).map(id).collect();
        let mut seen = HashSet::new();
        let mut at = ids[0];
        for _ in 0..ids.len() {
            at = successor(&at.addr, ids.iter().copied(), |_| true).unwrap();
            assert!(seen.insert(at.addr), "{at:?} watched twice");
        }
        assert_eq!(
            seen.len(),
            ids.len(),
            "every member is watched by one other"
        );
    }

    #[test]
    fn the_successor_skips_members_keep_refuses_and_asks_about_few() {
        let ids: Vec<NodeId> = (7000..8000).map(id).collect();
        let me = ids[0].addr;
        let refused = |m: &NodeId| m.addr.port().is_multiple_of(3);
        let mine = ring_point(&me);
        let brute = ids
            .iter()
            .filter(|m| m.addr != me && !refused(m))
            .min_by_key(|m| ring_point(&m.addr).wrapping_sub(mine))
            .copied();
        let mut asked = 0;
        let got = successor(&me, ids.iter().copied(), |m| {
            asked += 1;
            !refused(m)
        });
        assert_eq!(got, brute);
        assert!(asked < 60, "asked about {asked} of 1000");
    }

    #[test]
    fn alone_watches_nobody() {
        let me = id(7000);
        assert_eq!(successor(&me.addr, std::iter::once(me), |_| true), None);
        assert_eq!(successor(&me.addr, std::iter::empty(), |_| true), None);
    }
}
