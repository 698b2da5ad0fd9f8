//! Exponential backoff with full jitter, and the injectable randomness it
//! draws from.
//!
//! Written by hand because the well-kept crates do not offer full jitter:
//! `backon`'s jitter adds a random amount on top of the delay instead of
//! drawing the whole delay uniformly from [0, ceiling] (the AWS "full
//! jitter" that spreads retry storms best), and the `backoff` crate is
//! unmaintained. The formula is three lines; the RNG is injected so tests
//! are deterministic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where random delays come from: the thread-local RNG in production, a
/// seeded RNG or a fixed fraction in tests.
#[derive(Debug, Clone, Default)]
pub enum Jitter {
    /// Fresh randomness from `fastrand`'s thread-local generator.
    #[default]
    Random,
    /// A seeded generator shared by clones, for reproducible sequences.
    Seeded(Arc<Mutex<fastrand::Rng>>),
    /// Always the same fraction of the range (0.0 = no jitter, 1.0 = the maximum).
    Fixed(f64),
}

/// The largest backoff ceiling for retry number `retry` (0 for the first
/// retry): `min(cap, base · 2^retry)`.
pub fn ceiling(retry: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

/// The full-jitter delay before retry number `retry`: uniform in
/// `[0, min(cap, base · 2^retry)]`.
pub fn full_jitter(retry: u32, base: Duration, cap: Duration, jitter: &Jitter) -> Duration {
    jitter.up_to(ceiling(retry, base, cap))
}

// === impl Jitter ===

impl Jitter {
    /// A reproducible generator.
    pub fn seeded(seed: u64) -> Self {
        Jitter::Seeded(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))))
    }

    /// No randomness: always `fraction` (clamped to [0, 1]) of the range.
    pub fn fixed(fraction: f64) -> Self {
        Jitter::Fixed(fraction.clamp(0.0, 1.0))
    }

    /// A duration drawn uniformly from `[0, max]`, at nanosecond resolution.
    pub fn up_to(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let drawn = match self {
            Jitter::Random => fastrand::u64(..=nanos),
            Jitter::Seeded(rng) => {
                // A poisoned lock only means another thread panicked while
                // drawing; the generator state is still usable.
                let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
                rng.u64(..=nanos)
            }
            Jitter::Fixed(f) => (nanos as f64 * f) as u64,
        };
        Duration::from_nanos(drawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(25);
    const CAP: Duration = Duration::from_secs(1);

    #[test]
    fn ceiling_doubles_then_caps() {
        let ms: Vec<u128> = (0..8).map(|n| ceiling(n, BASE, CAP).as_millis()).collect();
        assert_eq!(ms, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        // Huge retry numbers saturate instead of overflowing.
        assert_eq!(ceiling(200, BASE, CAP), CAP);
        assert_eq!(
            ceiling(u32::MAX, Duration::MAX, Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn every_delay_stays_within_zero_and_the_ceiling() {
        let jitter = Jitter::seeded(7);
        for retry in 0..12 {
            let max = ceiling(retry, BASE, CAP);
            for _ in 0..1000 {
                let d = full_jitter(retry, BASE, CAP, &jitter);
                assert!(d <= max, "retry {retry}: {d:?} > {max:?}");
            }
        }
    }

    #[test]
    fn fixed_jitter_hits_the_ends_of_the_range() {
        assert_eq!(
            full_jitter(2, BASE, CAP, &Jitter::fixed(0.0)),
            Duration::ZERO
        );
        assert_eq!(
            full_jitter(2, BASE, CAP, &Jitter::fixed(1.0)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn delays_are_uniform_over_the_whole_range() {
        // 20,000 draws for a 100 ms ceiling into 10 bins: each bin expects
        // 2,000; a full-jitter bug (e.g. "equal jitter", [50, 100] ms) leaves
        // the lower bins empty. ±10 % is > 7 standard deviations of a bin.
        let jitter = Jitter::seeded(42);
        let max = ceiling(2, BASE, CAP);
        let mut bins = [0u32; 10];
        let mut sum = Duration::ZERO;
        for _ in 0..20_000 {
            let d = full_jitter(2, BASE, CAP, &jitter);
            sum += d;
            let bin = (d.as_nanos() * 10 / (max.as_nanos() + 1)) as usize;
            bins[bin] += 1;
        }
        for (i, n) in bins.iter().enumerate() {
            assert!((1800..=2200).contains(n), "bin {i} has {n}: {bins:?}");
        }
        let mean = sum / 20_000;
        assert!(
            mean > Duration::from_millis(48) && mean < Duration::from_millis(52),
            "{mean:?}"
        );
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        let a = Jitter::seeded(3);
        let b = Jitter::seeded(3);
        for _ in 0..100 {
            assert_eq!(a.up_to(CAP), b.up_to(CAP));
        }
    }
}
