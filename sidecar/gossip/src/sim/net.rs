//! The simulated network: per-link loss and latency, partitions, one-way links.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::RngExt;

/// A directed link's impairment, on top of the network defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Link {
    /// Probability a packet on this link is lost.
    pub loss: f64,
    /// Added to every packet's latency.
    pub extra_latency: Duration,
}

/// Network-wide behaviour.
#[derive(Clone, Debug)]
pub struct Net {
    /// Uniform loss on every link.
    pub loss: f64,
    /// Smallest one-way latency.
    pub latency_min: Duration,
    /// Largest one-way latency of the common case.
    pub latency_max: Duration,
    /// Probability of a latency spike (queueing), uniform up to `spike_max`.
    pub spike_chance: f64,
    /// Largest spike.
    pub spike_max: Duration,
    /// Directed link overrides.
    pub links: HashMap<(usize, usize), Link>,
    /// Extra latency on everything a node sends (a node with a slow uplink).
    pub slow_outbound: HashMap<usize, Duration>,
    /// Partition: nodes in different groups cannot talk. `None`: no partition.
    pub groups: Option<Vec<u8>>,
}

impl Default for Net {
    fn default() -> Self {
        Self {
            loss: 0.0,
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_millis(2),
            spike_chance: 0.01,
            spike_max: Duration::from_millis(50),
            links: HashMap::new(),
            slow_outbound: HashMap::new(),
            groups: None,
        }
    }
}

impl Net {
    /// Whether `from` and `to` are on the same side of the partition.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        match &self.groups {
            Some(g) => g.get(from) == g.get(to),
            None => true,
        }
    }

    /// Latency of one packet, or `None` when it is lost.
    pub fn transit(&self, rng: &mut SmallRng, from: usize, to: usize) -> Option<Duration> {
        if !self.connected(from, to) {
            return None;
        }
        let link = self.links.get(&(from, to)).copied().unwrap_or_default();
        let loss = 1.0 - (1.0 - self.loss) * (1.0 - link.loss);
        if loss > 0.0 && rng.random_bool(loss.min(1.0)) {
            return None;
        }
        Some(self.latency(rng, from) + link.extra_latency)
    }

    /// Latency of a reliable (TCP) message: no loss, but partitions hold.
    pub fn reliable(&self, rng: &mut SmallRng, from: usize, to: usize) -> Option<Duration> {
        if !self.connected(from, to) {
            return None;
        }
        let link = self.links.get(&(from, to)).copied().unwrap_or_default();
        if link.loss >= 1.0 {
            return None;
        }
        Some(self.latency(rng, from) * 3 + link.extra_latency)
    }

    fn latency(&self, rng: &mut SmallRng, from: usize) -> Duration {
        let span = self.latency_max.saturating_sub(self.latency_min);
        let mut d = self.latency_min + span.mul_f64(rng.random::<f64>());
        if self.spike_chance > 0.0 && rng.random_bool(self.spike_chance) {
            d += self.spike_max.mul_f64(rng.random::<f64>());
        }
        d + self.slow_outbound.get(&from).copied().unwrap_or_default()
    }
}
