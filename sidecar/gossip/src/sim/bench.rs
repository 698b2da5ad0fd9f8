//! Benchmark scenarios over the simulator: crash detection, false positives,
//! join convergence, update propagation and bandwidth. The `gossip-bench`
//! binary prints their tables; `docs/benchmarks/gossip.md` records them.

use std::collections::HashSet;
use std::time::Duration;

use foca::State;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{addr, Link, Net, Sim};
use crate::settings::Timing;

/// A network condition applied after the cluster converged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// No loss.
    Clean,
    /// 1 % uniform loss.
    Loss1,
    /// 10 % uniform loss.
    Loss10,
    /// 10 % loss plus one directed link that drops everything.
    Loss10OneWay,
    /// One member frozen for 3 s (a GC pause).
    GcPause,
    /// One member's outbound packets take 0.8 s longer (Lifeguard's case).
    SlowOutbound,
    /// One member handles every event 0.4–1.5 s late (CPU-starved).
    Starved,
    /// 30 % of the members cut off for 20 s, then healed.
    Partition,
}

/// Results of one scenario for one cluster size and variant.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Seconds from crash to the first suspicion anywhere, per seed.
    pub first_suspect: Vec<f64>,
    /// Seconds from crash until each survivor stops routing to it (suspect or dead).
    pub stop_routing: Vec<f64>,
    /// Seconds from crash until each survivor marks it dead.
    pub down: Vec<f64>,
    /// Seconds from crash until every survivor marks it dead, per seed.
    pub all_down: Vec<f64>,
    /// Survivors that never marked the crashed member dead within the run.
    pub missed: usize,
    /// Live members declared down (distinct member lives), summed over seeds.
    pub false_downs: usize,
    /// Down verdicts (one per observing member) behind `false_downs`.
    pub false_verdicts: usize,
    /// Down verdicts about the impaired member.
    pub impaired_downed: usize,
    /// Down verdicts the impaired member itself declared.
    pub impaired_declared: usize,
    /// Simulated member-seconds behind `false_downs`.
    pub fp_member_seconds: f64,
    /// Seconds until a joining member is alive everywhere, per seed.
    pub join: Vec<f64>,
    /// Seconds until an application broadcast reached every member, per seed.
    pub update: Vec<f64>,
    /// Bytes sent per member per second in steady state, per seed.
    pub bytes_per_member_s: Vec<f64>,
    /// Seconds until a healed partition is whole again, per seed.
    pub heal: Vec<f64>,
    /// Event-log hash of the first seed (replay check).
    pub first_hash: u64,
}

impl Report {
    /// Adds another run's false-positive figures (one seed) to these.
    pub fn absorb(&mut self, one: Report) {
        self.false_downs += one.false_downs;
        self.false_verdicts += one.false_verdicts;
        self.impaired_downed += one.impaired_downed;
        self.impaired_declared += one.impaired_declared;
        self.fp_member_seconds += one.fp_member_seconds;
        self.bytes_per_member_s.extend(one.bytes_per_member_s);
        if self.first_hash == 0 {
            self.first_hash = one.first_hash;
        }
    }
}

/// Percentile `p` (0–1) of `v`; NaN for no data.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let idx = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[idx]
}

/// Mean of `v`; NaN for no data.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

const WARMUP: Duration = Duration::from_secs(10);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The member the scenario impairs (never node 0, the join seed).
const IMPAIRED: usize = 1;

/// Applies the scenario's network condition at time `at`.
fn apply(sim: &mut Sim, scenario: Scenario, at: Duration) {
    match scenario {
        Scenario::Clean | Scenario::Partition => {}
        Scenario::Loss1 => sim.net.loss = 0.01,
        Scenario::Loss10 => sim.net.loss = 0.10,
        Scenario::Loss10OneWay => {
            sim.net.loss = 0.10;
            sim.net.links.insert(
                (IMPAIRED, 2),
                Link {
                    loss: 1.0,
                    extra_latency: Duration::ZERO,
                },
            );
        }
        Scenario::GcPause => sim.pause(IMPAIRED, at + Duration::from_secs(3)),
        Scenario::SlowOutbound => {
            sim.net
                .slow_outbound
                .insert(IMPAIRED, Duration::from_millis(800));
        }
        Scenario::Starved => sim.starve(IMPAIRED, true),
    }
}

/// Crash one member after warm-up and measure detection at every survivor.
pub fn crash_detection(n: usize, timing: &Timing, scenario: Scenario, seed: u64, r: &mut Report) {
    let mut sim = Sim::converged(n, timing.clone(), Net::default(), seed);
    sim.run_until(WARMUP, |_| {});
    apply(&mut sim, scenario, WARMUP);
    sim.run_until(WARMUP + Duration::from_secs(5), |_| {});
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xdead);
    let victim = rng.random_range(2..n.max(3)).min(n - 1);
    let target = addr(victim);
    sim.crash(victim);
    let crash = sim.now;
    let mut stop = vec![None; n];
    let mut down = vec![None; n];
    let mut first = None;
    let limit = crash + Duration::from_secs(60);
    let mut remaining = n - 1;
    let step = Duration::from_secs(1);
    let mut until = crash;
    while until < limit && remaining > 0 {
        until += step;
        sim.run_until(until, |s| {
            if down[s.node].is_some() {
                return;
            }
            let Some((_, state, _)) = s.core.state_of(target) else {
                return;
            };
            if state != State::Alive {
                let t = secs(s.now - crash);
                first.get_or_insert(t);
                stop[s.node].get_or_insert(t);
                if state == State::Down {
                    down[s.node] = Some(t);
                    remaining -= 1;
                }
            }
        });
    }
    if r.first_hash == 0 {
        r.first_hash = sim.log_hash();
    }
    r.first_suspect.extend(first);
    for i in (0..n).filter(|i| *i != victim) {
        match (stop[i], down[i]) {
            (Some(s), Some(d)) => {
                r.stop_routing.push(s);
                r.down.push(d);
            }
            (s, _) => {
                r.stop_routing.extend(s);
                r.missed += 1;
            }
        }
    }
    if remaining == 0 {
        r.all_down
            .push(down.iter().flatten().copied().fold(0.0, f64::max));
    }
}

/// Runs `minutes` of the scenario with nobody crashing; every down verdict is false.
pub fn false_positives(
    n: usize,
    timing: &Timing,
    scenario: Scenario,
    minutes: u64,
    seed: u64,
    r: &mut Report,
) {
    let mut sim = Sim::converged(n, timing.clone(), Net::default(), seed);
    sim.run_until(WARMUP, |_| {});
    apply(&mut sim, scenario, WARMUP);
    let start_bytes: u64 = sim.bytes_sent.iter().sum();
    let end = WARMUP + Duration::from_secs(60 * minutes);
    let mut downs = 0;
    let mut lives = HashSet::new();
    let mut impaired = HashSet::new();
    let mut declared = 0;
    sim.run_until(end, |s| {
        for v in s.core.take_downs() {
            downs += 1;
            lives.insert(v.member);
            if v.member.addr == addr(IMPAIRED) {
                impaired.insert(v.member);
            }
            if s.node == IMPAIRED && v.by_self {
                declared += 1;
            }
        }
    });
    if r.first_hash == 0 {
        r.first_hash = sim.log_hash();
    }
    r.false_downs += lives.len();
    r.false_verdicts += downs;
    r.impaired_downed += impaired.len();
    r.impaired_declared += declared;
    let span = secs(end - WARMUP);
    r.fp_member_seconds += span * n as f64;
    let bytes: u64 = sim.bytes_sent.iter().sum::<u64>() - start_bytes;
    r.bytes_per_member_s.push(bytes as f64 / n as f64 / span);
}

/// A new member joins through node 0: time until every member has it alive.
pub fn join_convergence(n: usize, timing: &Timing, scenario: Scenario, seed: u64, r: &mut Report) {
    let mut sim = Sim::converged(n, timing.clone(), Net::default(), seed);
    sim.run_until(WARMUP, |_| {});
    apply(&mut sim, scenario, WARMUP);
    let start = sim.now;
    let joiner = sim.add(0);
    let target = addr(joiner);
    let mut seen: HashSet<usize> = HashSet::new();
    let limit = start + Duration::from_secs(60);
    let mut done = None;
    while sim.now < limit && done.is_none() {
        let until = sim.now + Duration::from_millis(500);
        sim.run_until(until, |s| {
            if s.node != joiner && !seen.contains(&s.node) {
                if let Some((_, State::Alive, _)) = s.core.state_of(target) {
                    seen.insert(s.node);
                    if seen.len() == n && done.is_none() {
                        done = Some(secs(s.now - start));
                    }
                }
            }
        });
    }
    r.join.extend(done);
}

/// Node 0 broadcasts a message: time until every other member delivered it.
pub fn update_propagation(
    n: usize,
    timing: &Timing,
    scenario: Scenario,
    seed: u64,
    r: &mut Report,
) {
    let mut sim = Sim::converged(n, timing.clone(), Net::default(), seed);
    sim.run_until(WARMUP, |_| {});
    apply(&mut sim, scenario, WARMUP);
    let start = sim.now;
    if let Some(core) = sim.core(0) {
        let _ = core.broadcast(start, b"shard 7 released");
    }
    // The broadcast's first packets leave with node 0's next wake-up.
    let mut got: HashSet<usize> = HashSet::new();
    let mut done = None;
    let limit = start + Duration::from_secs(30);
    while sim.now < limit && done.is_none() {
        let until = sim.now + Duration::from_millis(250);
        sim.run_until(until, |s| {
            if s.apps > 0 && got.insert(s.node) && got.len() == n - 1 && done.is_none() {
                done = Some(secs(s.now - start));
            }
        });
    }
    r.update.extend(done);
}

/// Cut 30 % of the members off for 20 s, heal, and time until everyone is whole.
pub fn partition_heal(n: usize, timing: &Timing, seed: u64, r: &mut Report) {
    let mut sim = Sim::converged(n, timing.clone(), Net::default(), seed);
    sim.run_until(WARMUP, |_| {});
    let minority = (n * 3).div_ceil(10);
    sim.net.groups = Some((0..n).map(|i| u8::from(i >= n - minority)).collect());
    sim.run_until(WARMUP + Duration::from_secs(20), |_| {});
    sim.net.groups = None;
    let healed = sim.now;
    let limit = healed + Duration::from_secs(300);
    let mut done = None;
    while sim.now < limit && done.is_none() {
        let until = sim.now + Duration::from_secs(1);
        sim.run_until(until, |_| {});
        let whole = (0..n).all(|i| sim.core(i).is_some_and(|c| c.active_members() == n - 1));
        if whole {
            done = Some(secs(sim.now - healed));
        }
    }
    r.heal.extend(done);
}
