//! A rolling count of requests and failures over a time window, in ten
//! fixed buckets so memory stays constant whatever the request rate.

use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

/// Requests and failures seen in the last `window` (to a bucket's precision).
#[derive(Debug, Clone)]
pub(crate) struct Window {
    bucket_len: Duration,
    buckets: [Bucket; BUCKETS],
    /// Index of the bucket that `head_start` opens.
    head: usize,
    head_start: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    total: u32,
    failures: u32,
}

impl Window {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            bucket_len: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS],
            head: 0,
            head_start: now,
        }
    }

    /// Forgets everything (after a trip or a recovery).
    pub(crate) fn reset(&mut self, now: Instant) {
        self.buckets = [Bucket::default(); BUCKETS];
        self.head_start = now;
    }

    /// Counts one outcome at `now`.
    pub(crate) fn record(&mut self, now: Instant, failed: bool) {
        self.advance(now);
        let b = &mut self.buckets[self.head];
        b.total = b.total.saturating_add(1);
        b.failures = b.failures.saturating_add(u32::from(failed));
    }

    /// `(requests, failures)` in the window ending at `now`.
    pub(crate) fn totals(&mut self, now: Instant) -> (u32, u32) {
        self.advance(now);
        self.buckets.iter().fold((0, 0), |(t, f), b| {
            (t.saturating_add(b.total), f.saturating_add(b.failures))
        })
    }

    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.head_start);
        if elapsed < self.bucket_len {
            return;
        }
        if elapsed >= self.bucket_len.saturating_mul(BUCKETS as u32) {
            self.reset(now);
            return;
        }
        let mut elapsed = elapsed;
        while elapsed >= self.bucket_len {
            self.head = (self.head + 1) % BUCKETS;
            self.buckets[self.head] = Bucket::default();
            self.head_start += self.bucket_len;
            elapsed -= self.bucket_len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        for i in 0..10 {
            w.record(t0 + Duration::from_secs(i), i % 2 == 0);
        }
        assert_eq!(w.totals(t0 + Duration::from_secs(9)), (10, 5));
        // At 12 s the outcomes of seconds 0..=2 have left the window.
        assert_eq!(w.totals(t0 + Duration::from_millis(12_500)), (7, 3));
        assert_eq!(w.totals(t0 + Duration::from_secs(60)), (0, 0));
    }
}
