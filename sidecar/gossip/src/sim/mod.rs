//! A deterministic, seeded simulator: N protocol cores in one process on
//! virtual time, over a [`net::Net`] with loss, latency, partitions, paused
//! and CPU-starved members. Every processed event is folded into a hash, so
//! a run replays identically for a seed (see [`Sim::log_hash`]).
//!
//! Packets are counted at their sealed size plus 28 bytes of IPv4/UDP
//! header; sealing itself is skipped (it does not change behaviour).

pub mod bench;
pub mod net;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::core::{Core, Output};
use crate::id::NodeId;
use crate::keyring::SEAL_OVERHEAD;
use crate::meta::MemberMeta;
use crate::observer::NoopObserver;
use crate::settings::Timing;
use crate::wire::{self, PushPull};

pub use net::{Link, Net};

/// IPv4 + UDP header bytes counted per datagram.
const UDP_IP_HEADER: u64 = 28;
/// TCP/IP header bytes counted per 1448-byte segment of a push-pull frame.
const TCP_IP_HEADER: u64 = 52;

/// One simulated member.
struct Node {
    core: Option<Core>,
    wake_at: Option<Duration>,
    paused_until: Duration,
    starved: bool,
    generation: u64,
}

#[derive(Debug)]
enum Kind {
    Deliver { from: SocketAddr, plain: Vec<u8> },
    Wake,
    PushPullReq { from: usize, state: Box<PushPull> },
    PushPullResp { state: Box<PushPull> },
}

struct Ev {
    at: Duration,
    seq: u64,
    node: usize,
    delayed: bool,
    kind: Kind,
}

/// What the observer callback is told after each event a node handled.
pub struct Step<'a> {
    /// Virtual time.
    pub now: Duration,
    /// The node that handled the event.
    pub node: usize,
    /// Its core.
    pub core: &'a mut Core,
    /// Application messages it received in this step.
    pub apps: usize,
}

/// The simulator.
pub struct Sim {
    /// Virtual time.
    pub now: Duration,
    /// The network model; change it between runs to add faults.
    pub net: Net,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    events: HashMap<u64, Ev>,
    seq: u64,
    rng: SmallRng,
    timing: Timing,
    seed: u64,
    hash: u64,
    /// Bytes each node put on the wire.
    pub bytes_sent: Vec<u64>,
    /// Events processed.
    pub processed: u64,
}

/// Gossip address of simulated node `i`.
pub fn addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (i + 1)), 7946))
}

/// Metadata of simulated node `i`.
pub fn meta(i: usize) -> MemberMeta {
    MemberMeta {
        service: "sim".into(),
        pod: format!("sim-{i:05}"),
        inbound: format!("{}:7401", addr(i).ip()),
        admin: format!("{}:7402", addr(i).ip()),
        ..MemberMeta::default()
    }
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a.ip() {
        std::net::IpAddr::V4(v4) => (u32::from(v4) & 0x00ff_ffff)
            .checked_sub(1)
            .map(|i| i as usize),
        std::net::IpAddr::V6(_) => None,
    }
}

// === impl Sim ===

impl Sim {
    /// `n` members that all know each other at time zero (bootstrapped by
    /// a push-pull of the full roster), so runs start from a converged cluster.
    pub fn converged(n: usize, timing: Timing, net: Net, seed: u64) -> Self {
        let mut sim = Self {
            now: Duration::ZERO,
            net,
            nodes: Vec::with_capacity(n),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            rng: SmallRng::seed_from_u64(seed),
            timing,
            seed,
            hash: 0xcbf2_9ce4_8422_2325,
            bytes_sent: vec![0; n],
            processed: 0,
        };
        for i in 0..n {
            sim.nodes.push(Node {
                core: None,
                wake_at: None,
                paused_until: Duration::ZERO,
                starved: false,
                generation: 1,
            });
            sim.nodes[i].core = sim.new_core(i, 1);
        }
        let roster: Vec<_> = (0..n)
            .filter_map(|i| sim.nodes[i].core.as_ref().map(|c| c.full_state()))
            .collect();
        let all = PushPull {
            from: NodeId {
                addr: addr(0),
                generation: 1,
            },
            members: roster
                .iter()
                .flat_map(|r| r.members.iter().cloned())
                .collect(),
            digests: Vec::new(),
            metas: roster
                .iter()
                .flat_map(|r| r.metas.iter().cloned())
                .collect(),
        };
        for i in 0..n {
            // Members start out of phase, as real ones do; aligned timers would
            // make every member probe and gossip at the same instants.
            let offset = sim.timing.probe_interval.mul_f64(sim.rng.random::<f64>());
            if let Some(core) = sim.nodes[i].core.as_mut() {
                let _ = core.preload(offset, all.clone());
                while core.poll_output().is_some() {}
                let _ = core.take_downs();
            }
            sim.wake(i);
        }
        sim
    }

    fn new_core(&self, i: usize, generation: u64) -> Option<Core> {
        let id = NodeId {
            addr: addr(i),
            generation,
        };
        let seed = self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64) ^ (generation << 40);
        Core::new(
            id,
            meta(i),
            self.timing.clone(),
            seed,
            Arc::new(NoopObserver),
        )
        .ok()
    }

    /// Number of nodes (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The core of node `i`, unless crashed.
    pub fn core(&mut self, i: usize) -> Option<&mut Core> {
        self.nodes.get_mut(i).and_then(|n| n.core.as_mut())
    }

    /// Stops node `i` abruptly.
    pub fn crash(&mut self, i: usize) {
        self.fold(&[1, i as u64]);
        if let Some(n) = self.nodes.get_mut(i) {
            n.core = None;
            n.wake_at = None;
        }
    }

    /// Starts node `i` again under a new generation and joins it through `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        self.fold(&[2, i as u64]);
        let generation = self.nodes[i].generation + 1;
        self.nodes[i].generation = generation;
        self.nodes[i].core = self.new_core(i, generation);
        self.nodes[i].wake_at = None;
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.join(now, &[addr(seed)]);
        }
        self.drain(i);
        self.wake(i);
    }

    /// Adds a brand-new node that joins through `seed`; returns its index.
    pub fn add(&mut self, seed: usize) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            core: None,
            wake_at: None,
            paused_until: Duration::ZERO,
            starved: false,
            generation: 0,
        });
        self.bytes_sent.push(0);
        self.restart(i, seed);
        i
    }

    /// Freezes node `i` (a GC pause): its events wait until `until`.
    pub fn pause(&mut self, i: usize, until: Duration) {
        self.nodes[i].paused_until = until;
    }

    /// Makes node `i` CPU-starved: each event it handles is 0.4–1.5 s late.
    pub fn starve(&mut self, i: usize, on: bool) {
        self.nodes[i].starved = on;
    }

    /// Hash of every event processed so far: equal seeds give equal hashes.
    pub fn log_hash(&self) -> u64 {
        self.hash
    }

    /// Runs until `until`, calling `observe` after every event a node handled.
    pub fn run_until(&mut self, until: Duration, mut observe: impl FnMut(Step<'_>)) {
        while let Some(Reverse((at, seq, _))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.now = self.now.max(at);
            if let Some(apps) = self.process(ev) {
                let now = self.now;
                let node = apps.0;
                if let Some(core) = self.nodes[node].core.as_mut() {
                    observe(Step {
                        now,
                        node,
                        core,
                        apps: apps.1,
                    });
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Handles one event; returns the node and the app messages it received.
    fn process(&mut self, ev: Ev) -> Option<(usize, usize)> {
        let i = ev.node;
        let node = &self.nodes[i];
        node.core.as_ref()?;
        if node.paused_until > self.now {
            let at = node.paused_until;
            self.push_ev(Ev { at, ..ev });
            return None;
        }
        if node.starved && !ev.delayed {
            let late = Duration::from_millis(self.rng.random_range(400..=1500));
            let at = self.now + late;
            self.push_ev(Ev {
                at,
                delayed: true,
                ..ev
            });
            return None;
        }
        self.processed += 1;
        let now = self.now;
        let tag = match &ev.kind {
            Kind::Deliver { plain, .. } => 10 + plain.len() as u64,
            Kind::Wake => 3,
            Kind::PushPullReq { .. } => 4,
            Kind::PushPullResp { .. } => 5,
        };
        self.fold(&[now.as_micros() as u64, i as u64, tag]);
        let core = self.nodes[i].core.as_mut()?;
        match ev.kind {
            Kind::Deliver { from, plain } => {
                let _ = core.handle_udp(now, from, &plain);
            }
            Kind::Wake => {
                self.nodes[i].wake_at = None;
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timers(now);
                }
            }
            Kind::PushPullReq { from, state } => {
                let mine = Box::new(core.push_pull_answer(&state));
                let _ = core.apply_push_pull(now, *state);
                if let Some(lat) = self.net.reliable(&mut self.rng, i, from) {
                    self.count_tcp(i, &mine);
                    self.push_ev(Ev {
                        at: now + lat,
                        seq: 0,
                        node: from,
                        delayed: false,
                        kind: Kind::PushPullResp { state: mine },
                    });
                }
            }
            Kind::PushPullResp { state } => {
                let _ = core.apply_push_pull(now, *state);
            }
        }
        let apps = self.drain(i);
        self.wake(i);
        Some((i, apps))
    }

    /// Carries out node `i`'s outputs; returns app messages received.
    fn drain(&mut self, i: usize) -> usize {
        let mut apps = 0;
        while let Some(out) = self.nodes[i].core.as_mut().and_then(Core::poll_output) {
            match out {
                Output::Send { to, plain } => {
                    self.bytes_sent[i] += (plain.len() + SEAL_OVERHEAD) as u64 + UDP_IP_HEADER;
                    let Some(j) = index_of(to).filter(|j| *j < self.nodes.len()) else {
                        continue;
                    };
                    if let Some(lat) = self.net.transit(&mut self.rng, i, j) {
                        let from = addr(i);
                        self.push_ev(Ev {
                            at: self.now + lat,
                            seq: 0,
                            node: j,
                            delayed: false,
                            kind: Kind::Deliver { from, plain },
                        });
                    }
                }
                Output::PushPull { to } => {
                    let Some(j) = index_of(to).filter(|j| *j < self.nodes.len()) else {
                        continue;
                    };
                    let Some(state) = self.nodes[i].core.as_ref().map(Core::push_pull_state) else {
                        continue;
                    };
                    let state = Box::new(state);
                    self.count_tcp(i, &state);
                    if let Some(lat) = self.net.reliable(&mut self.rng, i, j) {
                        self.push_ev(Ev {
                            at: self.now + lat,
                            seq: 0,
                            node: j,
                            delayed: false,
                            kind: Kind::PushPullReq { from: i, state },
                        });
                    }
                }
                Output::App { .. } => apps += 1,
            }
        }
        apps
    }

    fn count_tcp(&mut self, i: usize, state: &PushPull) {
        let len = (wire::encode(state).len() + SEAL_OVERHEAD + 4) as u64;
        self.bytes_sent[i] += len + len.div_ceil(1448) * TCP_IP_HEADER;
    }

    /// Makes sure node `i` is woken for its next timer.
    fn wake(&mut self, i: usize) {
        let Some(next) = self.nodes[i].core.as_ref().and_then(Core::next_timer) else {
            return;
        };
        let due = match self.nodes[i].wake_at {
            Some(at) => next < at,
            None => true,
        };
        if due {
            self.nodes[i].wake_at = Some(next);
            self.push_ev(Ev {
                at: next.max(self.now),
                seq: 0,
                node: i,
                delayed: false,
                kind: Kind::Wake,
            });
        }
    }

    fn push_ev(&mut self, mut ev: Ev) {
        self.seq += 1;
        ev.seq = self.seq;
        self.queue.push(Reverse((ev.at, ev.seq, ev.node)));
        self.events.insert(ev.seq, ev);
    }

    fn fold(&mut self, words: &[u64]) {
        // FNV-1a over the words: cheap, stable across runs and platforms.
        for w in words {
            for b in w.to_le_bytes() {
                self.hash ^= u64::from(b);
                self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
}

#[cfg(test)]
mod tests;
