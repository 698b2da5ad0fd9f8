//! Lifeguard (Dadgar et al., 2018) as pure bookkeeping, layered around foca:
//! - local health multiplier (LHM): a member that misses acks and nacks
//!   suspects its own slowness and stretches its probe period and timeout;
//! - dynamic suspicion timeout: starts long and shrinks with every
//!   independent confirmation, so true failures are declared fast and
//!   false suspicions get time to be refuted;
//! - nacks: an intermediary that cannot reach the target says so, which
//!   tells the prober that its own links work.
//!
//! foca has none of this, and its `Config::probe_period` cannot change at
//! run time, so the core applies these by rescheduling foca's own timers.

use std::time::Duration;

/// Local health score, 0 (healthy) to `max - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
    max: u32,
}

/// The suspicion timeout bounds for one suspicion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuspicionTimeout {
    /// Timeout once `k` confirmations arrived.
    pub min: Duration,
    /// Timeout with no confirmation.
    pub max: Duration,
    /// Confirmations needed to reach `min`.
    pub k: u32,
}

// === impl LocalHealth ===

impl LocalHealth {
    /// A healthy score; `max` is memberlist's awareness multiplier (8).
    pub fn new(max: u32) -> Self {
        Self {
            score: 0,
            max: max.max(1),
        }
    }

    /// Applies a delta, clamped to `[0, max - 1]`.
    pub fn apply(&mut self, delta: i32) {
        let next = i64::from(self.score) + i64::from(delta);
        self.score = next.clamp(0, i64::from(self.max - 1)) as u32;
    }

    /// Current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// Scales a probe period or timeout by `score + 1`.
    pub fn scale(&self, d: Duration) -> Duration {
        d.saturating_mul(self.score + 1)
    }

    /// Delta after a failed probe: one per expected nack that never came, or
    /// one when there was nobody to ask.
    pub fn failed_probe_delta(expected_nacks: u32, responses: u32) -> i32 {
        if expected_nacks == 0 {
            1
        } else {
            expected_nacks.saturating_sub(responses) as i32
        }
    }
}

// === impl SuspicionTimeout ===

impl SuspicionTimeout {
    /// Bounds for a cluster of `n` members.
    ///
    /// `max = multiplier × max(1, log10 n) × interval` (memberlist's suspicion
    /// timeout), used while nobody confirms; `min = ¾ × multiplier × interval`
    /// (3 s at the defaults), reached after `k` independent confirmations.
    /// The floor is chosen so a member frozen for 3 s (a GC pause) is back
    /// and refuting before any suspicion of it can expire; see
    /// docs/benchmarks/gossip.md for the trade-off against detection time.
    pub fn for_cluster(n: usize, interval: Duration, multiplier: u32, k: u32) -> Self {
        let log_n = (n.max(1) as f64).log10().max(1.0);
        let max = interval.mul_f64(f64::from(multiplier) * log_n);
        let min = interval.mul_f64(0.75 * f64::from(multiplier)).max(interval);
        Self {
            min: min.min(max),
            max,
            k: k.max(1),
        }
    }

    /// Lifeguard's formula: `max − (max − min)·log(c+1)/log(k+1)`, floored at `min`.
    pub fn timeout(&self, confirmations: u32) -> Duration {
        let c = confirmations.min(self.k);
        let frac = ((c + 1) as f64).ln() / ((self.k + 1) as f64).ln();
        let span = self.max.saturating_sub(self.min);
        self.max.saturating_sub(span.mul_f64(frac)).max(self.min)
    }
}

#[cfg(test)]
mod tests;
