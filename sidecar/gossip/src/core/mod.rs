//! The sans-IO protocol core: foca plus Lifeguard, metadata and application
//! broadcasts. Time and packets are inputs, datagrams and push-pull requests
//! are outputs, so the tokio driver and the simulator drive it alike.
//!
//! - [`items`]: custom broadcasts (metadata, app messages, confirmations).
//! - [`inspect`]: reads foca packets for the Lifeguard layer.
//! - `effects`: foca's `Runtime`, timer scheduling and Lifeguard hooks.
//! - `view`: the membership view.
//! - `watch`: ring watch and suspicion verification beside foca's probes.

mod effects;
mod inspect;
pub(crate) mod items;
mod view;
mod watch;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{Foca, PeriodicParams, PostcardCodec, State};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::id::NodeId;
use crate::lifeguard::LocalHealth;
use crate::meta::{MemberMeta, MembershipView, MetaError};
use crate::observer::GossipObserver;
use crate::settings::Timing;
use crate::wire::{
    self, Item, MetaDigest, MetaRecord, PushPull, Wire, ENVELOPE_ROOM, MAX_APP_BROADCAST, MAX_PLAIN,
};

use effects::{Effects, Entry, ProbeState, Suspicion};
use items::{Handler, MAX_MEMBERS};

pub use crate::wire::BadPacket;

/// Lifeguard's maximum local health multiplier (memberlist's `AwarenessMaxMultiplier`).
const MAX_HEALTH: u32 = 8;

/// What the core asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Seal and send this plaintext datagram.
    Send {
        /// Destination gossip address.
        to: SocketAddr,
        /// Plaintext (see [`crate::wire`]).
        plain: Vec<u8>,
    },
    /// Exchange full state with this member over TCP, then call
    /// [`Core::apply_push_pull`] with its answer.
    PushPull {
        /// Member to exchange with.
        to: SocketAddr,
    },
    /// An application broadcast arrived.
    App {
        /// Sender.
        from: NodeId,
        /// Payload.
        data: Vec<u8>,
    },
}

/// A member this core saw go down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownVerdict {
    /// The member.
    pub member: NodeId,
    /// This core's own suspicion timer declared it (rather than hearing it).
    pub by_self: bool,
}

/// Down verdicts kept until drained.
const MAX_DOWNS_KEPT: usize = 1024;

/// Why the core refused a call.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Metadata out of bounds.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Application broadcast too large or empty.
    #[error("application broadcast must be 1 to {MAX_APP_BROADCAST} bytes")]
    BroadcastSize,
    /// foca refused the operation.
    #[error("swim core: {0}")]
    Swim(String),
}

/// Internal timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CoreTimer {
    /// A timer foca asked for.
    Foca(foca::Timer<NodeId>),
    /// Re-check a suspicion's (shrinking) deadline.
    Suspicion(SocketAddr),
    /// Nack `origin` if `target` did not answer our indirect ping.
    Nack { origin: SocketAddr, target: NodeId },
    /// Periodic push-pull.
    PushPull,
    /// Check our ring successor (see `watch`).
    Watch,
    /// Resend an unanswered check.
    CheckResend(u64),
    /// A check went unanswered.
    CheckExpired(u64),
    /// The helpers asked to check a member had their time.
    IndirectExpired(u64),
    /// Check a member we suspect ourselves again.
    Recheck(NodeId, u16),
}

/// One member's protocol state machine.
pub struct Core {
    foca: Foca<NodeId, PostcardCodec, SmallRng, Handler>,
    /// Shares the broadcast tables with the handler inside foca.
    tables: Handler,
    /// Our own random choices (push-pull partner), seeded.
    rng: SmallRng,
    fx: Effects,
    now: Duration,
    timers: BinaryHeap<Reverse<Entry>>,
    timer_seq: u64,
    timing: Timing,
    id: NodeId,
    self_incarnation: u16,
    meta: MemberMeta,
    meta_version: u64,
    left: bool,
    app_seq: u64,
    out: VecDeque<Output>,
    health: LocalHealth,
    /// Failed probes in a row whose indirect helpers all stayed silent.
    silent_probes: u32,
    suspicions: HashMap<SocketAddr, Suspicion>,
    probe: Option<ProbeState>,
    /// Indirect pings we relay and may have to nack: (origin, target).
    nack_watch: HashMap<(SocketAddr, SocketAddr), ()>,
    /// Mirror of foca's membership: addr -> (identity, state, incarnation).
    states: HashMap<SocketAddr, (NodeId, State, u16)>,
    /// The mirror needs a full rebuild.
    dirty: bool,
    /// Members whose mirror entry may be stale.
    touched: Vec<SocketAddr>,
    /// The view must be rebuilt (mirror, metadata or self changed).
    view_dirty: bool,
    last_view: Option<MembershipView>,
    joined: bool,
    /// Cluster size the foca config was last tuned for.
    tuned_for: usize,
    /// Set while a suspicion timer runs, to attribute down verdicts.
    declaring: bool,
    /// Recent down verdicts (bounded), for the simulator and tests.
    downs: VecDeque<DownVerdict>,
    observer: Arc<dyn GossipObserver>,
    /// Ring watch and verification checks in flight.
    checks: watch::Checks,
    /// foca's current timer token, to time suspicions we raise ourselves.
    foca_token: Option<foca::TimerToken>,
}

// === impl Core ===

impl Core {
    /// A member that knows nobody yet. `seed` drives every random choice.
    pub fn new(
        id: NodeId,
        meta: MemberMeta,
        timing: Timing,
        seed: u64,
        observer: Arc<dyn GossipObserver>,
    ) -> Result<Self, CoreError> {
        meta.validate()?;
        let tables = Handler::default();
        tables.lock().local = Some(id.addr);
        let config = foca_config(&timing, 1);
        let foca = Foca::with_custom_broadcast(
            id,
            config,
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            tables.clone(),
        );
        let mut core = Self {
            foca,
            tables,
            rng: SmallRng::seed_from_u64(seed ^ 0x005e_ed0f_c0de),
            fx: Effects::default(),
            now: Duration::ZERO,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            timing,
            id,
            self_incarnation: 0,
            meta,
            meta_version: 0,
            left: false,
            app_seq: 0,
            out: VecDeque::new(),
            health: LocalHealth::new(MAX_HEALTH),
            silent_probes: 0,
            suspicions: HashMap::new(),
            probe: None,
            nack_watch: HashMap::new(),
            states: HashMap::new(),
            dirty: true,
            touched: Vec::new(),
            view_dirty: true,
            last_view: None,
            joined: false,
            tuned_for: 1,
            declaring: false,
            downs: VecDeque::new(),
            observer,
            checks: watch::Checks::default(),
            foca_token: None,
        };
        core.announce_meta();
        // Spread members' exchanges over the period instead of aligning them.
        let first = {
            use rand::RngExt;
            core.timing
                .push_pull_interval
                .mul_f64(core.rng.random::<f64>())
        };
        core.schedule(first, CoreTimer::PushPull);
        if core.timing.lifeguard {
            // Drawn only here, so plain foca's random choices stay as they were.
            let first_watch = {
                use rand::RngExt;
                core.timing.probe_interval.mul_f64(core.rng.random::<f64>())
            };
            core.start_watch(first_watch);
        }
        Ok(core)
    }

    /// This member's current identity (the generation grows on rejoin).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// True once another member has acknowledged us and until we are alone again.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// The local health score (0 = healthy).
    pub fn local_health(&self) -> u32 {
        self.health.score()
    }

    /// Announces ourselves to seeds (UDP) and asks for a push-pull with the first.
    pub fn join(&mut self, now: Duration, seeds: &[SocketAddr]) {
        self.advance(now);
        let mut first = true;
        for &addr in seeds.iter().filter(|a| **a != self.id.addr) {
            let dst = NodeId {
                addr,
                generation: 0,
            };
            if let Err(e) = self.foca.announce(dst, &mut self.fx) {
                tracing::debug!(error = %e, %addr, "gossip announce failed");
            }
            if first {
                self.out.push_back(Output::PushPull { to: addr });
                first = false;
            }
        }
        self.settle();
    }

    /// Handles one opened (decrypted) datagram from `from`.
    pub fn handle_udp(
        &mut self,
        now: Duration,
        from: SocketAddr,
        plain: &[u8],
    ) -> Result<(), BadPacket> {
        self.advance(now);
        let result = self.handle_udp_inner(from, plain);
        if let Err(reason) = result {
            self.observer.bad_packet(reason);
        }
        self.settle();
        result
    }

    fn handle_udp_inner(&mut self, from: SocketAddr, plain: &[u8]) -> Result<(), BadPacket> {
        match wire::decode::<Wire>(plain, MAX_PLAIN)? {
            Wire::Swim { buddy, packet } => {
                let (header, updates) = inspect::inspect(&packet).ok_or(BadPacket::Malformed)?;
                self.before_swim(&header, &updates, buddy);
                self.verify_heard(&updates);
                match self.foca.handle_data(&packet, &mut self.fx) {
                    Ok(()) => Ok(()),
                    Err(
                        foca::Error::Decode(_)
                        | foca::Error::MalformedPacket
                        | foca::Error::DataTooBig,
                    ) => Err(BadPacket::Malformed),
                    Err(foca::Error::CustomBroadcast(_)) => Err(BadPacket::Malformed),
                    Err(e) => {
                        tracing::trace!(error = %e, "swim packet ignored");
                        Ok(())
                    }
                }
            }
            Wire::Nack { target } => {
                self.on_nack(from, target);
                Ok(())
            }
            msg => {
                self.on_check_message(from, msg);
                Ok(())
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timers(&mut self, now: Duration) {
        self.advance(now);
        while let Some(Reverse(entry)) = self.timers.peek() {
            if entry.at > self.now {
                break;
            }
            let Some(Reverse(entry)) = self.timers.pop() else {
                break;
            };
            self.fire(entry.timer);
            self.settle();
        }
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Option<Duration> {
        self.timers.peek().map(|Reverse(e)| e.at)
    }

    /// Next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Our side of a push-pull we start: member states and metadata digests.
    pub fn push_pull_state(&self) -> PushPull {
        let mut state = self.full_state();
        state.metas.clear();
        state
    }

    /// Our answer to a peer's push-pull: member states, digests, and the
    /// metadata records the peer lacks or has older.
    pub fn push_pull_answer(&self, request: &PushPull) -> PushPull {
        let theirs: HashMap<SocketAddr, (u64, u64)> = request
            .digests
            .iter()
            .map(|d| (d.addr, (d.generation, d.version)))
            .collect();
        let mut state = self.full_state();
        state.metas.retain(|m| {
            theirs
                .get(&m.id.addr)
                .is_none_or(|have| *have < (m.id.generation, m.version))
        });
        state
    }

    /// Everything we know, metadata included (bootstrap, tests).
    pub fn full_state(&self) -> PushPull {
        let mut members: Vec<_> = self.foca.iter_membership_state().cloned().collect();
        let own_state = if self.left { State::Down } else { State::Alive };
        members.push(foca::Member::new(self.id, self.self_incarnation, own_state));
        let t = self.tables.lock();
        let metas: Vec<MetaRecord> = t.metas.values().cloned().collect();
        let digests = metas
            .iter()
            .map(|m| MetaDigest {
                addr: m.id.addr,
                generation: m.id.generation,
                version: m.version,
            })
            .collect();
        PushPull {
            from: self.id,
            members,
            digests,
            metas,
        }
    }

    /// Merges a peer's full state (its answer to our push-pull, or its push).
    pub fn apply_push_pull(&mut self, now: Duration, state: PushPull) -> Result<(), BadPacket> {
        self.merge_state(now, state, true)
    }

    /// Loads a known roster without gossiping it (simulator bootstrap,
    /// restoring state): the cluster is assumed to know it already.
    pub fn preload(&mut self, now: Duration, state: PushPull) -> Result<(), BadPacket> {
        self.merge_state(now, state, false)
    }

    fn merge_state(
        &mut self,
        now: Duration,
        state: PushPull,
        spread: bool,
    ) -> Result<(), BadPacket> {
        self.advance(now);
        if state.members.len() > MAX_MEMBERS
            || state.metas.len() > MAX_MEMBERS
            || state.digests.len() > MAX_MEMBERS
        {
            self.observer.bad_packet(BadPacket::Oversized);
            return Err(BadPacket::Oversized);
        }
        {
            let mut t = self.tables.lock();
            for rec in state.metas {
                if rec.id.addr != self.id.addr && rec.meta.validate().is_ok() {
                    t.merge_meta(rec);
                }
            }
        }
        if let Err(e) = self
            .foca
            .apply_many(state.members.into_iter(), spread, &mut self.fx)
        {
            tracing::debug!(error = %e, "push-pull state partly refused");
        }
        self.dirty = true;
        self.settle();
        Ok(())
    }

    /// Replaces our metadata and spreads the change.
    pub fn update_meta(&mut self, now: Duration, meta: MemberMeta) -> Result<(), CoreError> {
        meta.validate()?;
        self.advance(now);
        self.meta = meta;
        self.announce_meta();
        self.settle();
        Ok(())
    }

    /// Spreads a small application message to every member.
    pub fn broadcast(&mut self, now: Duration, data: &[u8]) -> Result<(), CoreError> {
        if data.is_empty() || data.len() > MAX_APP_BROADCAST {
            return Err(CoreError::BroadcastSize);
        }
        self.advance(now);
        self.app_seq += 1;
        let item = Item::App {
            origin: self.id,
            seq: self.app_seq,
            data: data.to_vec(),
        };
        self.foca
            .add_broadcast(&wire::encode_item(&item))
            .map_err(|e| CoreError::Swim(e.to_string()))?;
        // Spread it now rather than on the next probe.
        self.foca
            .broadcast(&mut self.fx)
            .map_err(|e| CoreError::Swim(e.to_string()))?;
        self.settle();
        Ok(())
    }

    /// Leaves gracefully: members show us as `Left`, not `Dead`.
    pub fn leave(&mut self, now: Duration) {
        self.advance(now);
        self.left = true;
        self.announce_meta();
        if let Err(e) = self.foca.leave_cluster(&mut self.fx) {
            tracing::debug!(error = %e, "leave failed");
        }
        self.view_dirty = true;
        self.settle();
    }

    /// The view, if it changed since the last call.
    pub fn take_view(&mut self) -> Option<MembershipView> {
        self.refresh();
        if !std::mem::take(&mut self.view_dirty) {
            return None;
        }
        let view = self.build_view();
        if self.last_view.as_ref() == Some(&view) {
            return None;
        }
        self.observer.members(view::counts(&view));
        self.last_view = Some(view.clone());
        Some(view)
    }

    /// foca's state of the member at `addr`, for the simulator and tests.
    pub fn state_of(&mut self, addr: SocketAddr) -> Option<(NodeId, State, u16)> {
        self.refresh();
        self.states.get(&addr).copied()
    }

    /// Down verdicts since the last call (at most the last 1024).
    pub fn take_downs(&mut self) -> Vec<DownVerdict> {
        self.downs.drain(..).collect()
    }

    /// Number of members foca considers active (not counting ourselves).
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
    }

    fn schedule(&mut self, after: Duration, timer: CoreTimer) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Entry {
            at: self.now + after,
            seq: self.timer_seq,
            timer,
        }));
    }

    fn announce_meta(&mut self) {
        self.meta_version += 1;
        let mut meta = self.meta.clone();
        if self.timing.lifeguard {
            watch::advertise_checks(&mut meta);
        }
        let rec = MetaRecord {
            id: self.id,
            version: self.meta_version,
            left: self.left,
            meta,
        };
        if let Err(e) = self
            .foca
            .add_broadcast(&wire::encode_item(&Item::Meta(rec)))
        {
            tracing::warn!(error = %e, "cannot announce member metadata");
        }
        self.view_dirty = true;
    }

    fn push_pull_period(&self) -> Duration {
        // memberlist's pushPullScale: beyond 32 members, back off with log2(n)
        // so that full-state traffic stays flat as the cluster grows.
        let n = self.foca.num_members() + 1;
        let mult = if n <= 32 {
            1.0
        } else {
            ((n as f64).log2() - 5.0).ceil() + 1.0
        };
        self.timing.push_pull_interval.mul_f64(mult)
    }
}

/// foca configuration for a cluster of about `n` members.
pub(crate) fn foca_config(t: &Timing, n: usize) -> foca::Config {
    let size =
        NonZeroU32::new(u32::try_from(n.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(size);
    c.probe_period = t.probe_interval;
    c.probe_rtt = t
        .probe_timeout
        .min(t.probe_interval.saturating_sub(Duration::from_millis(1)));
    c.num_indirect_probes =
        NonZeroUsize::new(t.indirect_probes as usize).unwrap_or(NonZeroUsize::MIN);
    // memberlist: retransmit limit = mult × ceil(log10(n + 1)).
    let tx = t
        .retransmit_multiplier
        .saturating_mul(((n as f64) + 1.0).log10().ceil().max(1.0) as u32);
    c.max_transmissions = NonZeroU8::new(tx.clamp(1, 255) as u8).unwrap_or(NonZeroU8::MIN);
    // memberlist's suspicion timeout; Lifeguard replaces it per suspicion.
    c.suspect_to_down_after = t
        .probe_interval
        .mul_f64(f64::from(t.suspicion_multiplier) * (n.max(1) as f64).log10().max(1.0));
    c.remove_down_after = Some(t.tombstone);
    c.max_packet_size = NonZeroUsize::new(MAX_PLAIN - ENVELOPE_ROOM).unwrap_or(NonZeroUsize::MIN);
    c.notify_down_members = true;
    c.periodic_announce = Some(PeriodicParams {
        frequency: t.push_pull_interval,
        num_members: NonZeroUsize::MIN,
    });
    // Members held down are how a healed partition finds its way back (a
    // live one answers and rejoins). With Lifeguard's fast downs both sides of
    // a cut are down within seconds, so waiting a whole push-pull interval
    // made every heal take ~30 s; every 5 probe periods heals in seconds for
    // about 40 B/s per member while anyone is held down.
    let to_down = if t.lifeguard {
        t.probe_interval.saturating_mul(5)
    } else {
        t.push_pull_interval
    };
    c.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: to_down,
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_gossip = Some(PeriodicParams {
        frequency: (t.probe_interval / 5).max(Duration::from_millis(1)),
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

#[cfg(test)]
mod tests;
