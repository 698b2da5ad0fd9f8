//! Counters and latencies of a run, and percentiles over them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::client::Sent;
use crate::load::groups::Group;
use crate::load::workload::Kind;

/// What one worker (or the whole run, once merged) observed.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Latency of every request, in microseconds (bounded by `--max-requests`).
    latencies_us: Vec<u32>,
    /// Requests sent.
    pub requests: u64,
    /// Requests that were neither a 200 nor an expected business refusal.
    pub failed: u64,
    /// Count per kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Count per HTTP status (or `timeout` / `transport`).
    pub by_status: BTreeMap<String, u64>,
    /// Count per `x-shardmesh-error` reason (plus client-side `timeout` / `transport`).
    pub by_reason: BTreeMap<String, u64>,
    /// Count per app error of non-200 answers (e.g. `insufficient-funds`).
    pub app_errors: BTreeMap<String, u64>,
    /// Requests moved to another target because one refused the connection.
    pub failovers: u64,
    /// The first few failed requests' details (at most [`MAX_SAMPLES`]).
    pub failure_samples: Vec<String>,
    /// Counts by shard group (with `--watch-shards`).
    pub groups: BTreeMap<&'static str, Group>,
}

/// Failed requests described one by one in a report; the rest are counted.
pub const MAX_SAMPLES: usize = 8;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
}

// === impl Stats ===

impl Stats {
    /// Counts one request.
    pub fn record(&mut self, kind: Kind, sent: &Sent) {
        self.requests += 1;
        self.failed += u64::from(sent.failed);
        self.failovers += u64::from(sent.failovers);
        let us = u32::try_from(sent.latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.push(us);
        *self.by_kind.entry(kind.name().to_string()).or_default() += 1;
        *self.by_status.entry(sent.status.clone()).or_default() += 1;
        if let Some(r) = &sent.reason {
            *self.by_reason.entry(r.clone()).or_default() += 1;
        }
        if let Some(e) = &sent.app_error {
            *self.app_errors.entry(e.clone()).or_default() += 1;
        }
        if let Some(d) = &sent.detail {
            if self.failure_samples.len() < MAX_SAMPLES {
                self.failure_samples.push(d.clone());
            }
        }
    }

    /// Adds another worker's observations.
    pub fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.failovers += other.failovers;
        self.latencies_us.extend(other.latencies_us);
        let room = MAX_SAMPLES.saturating_sub(self.failure_samples.len());
        self.failure_samples
            .extend(other.failure_samples.into_iter().take(room));
        for (name, g) in &other.groups {
            self.groups.entry(name).or_default().merge(g);
        }
        for (mine, theirs) in [
            (&mut self.by_kind, other.by_kind),
            (&mut self.by_status, other.by_status),
            (&mut self.by_reason, other.by_reason),
            (&mut self.app_errors, other.app_errors),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }

    /// Nearest-rank percentiles of the recorded latencies.
    pub fn percentiles(&mut self) -> Percentiles {
        self.latencies_us.sort_unstable();
        let v = &self.latencies_us;
        let at = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            f64::from(v[rank - 1]) / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::client::Answer;

    fn sent(ms: u64, status: &str, reason: Option<&str>) -> Sent {
        Sent {
            latency: Duration::from_millis(ms),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            app_error: None,
            answer: Answer::Ambiguous,
            failed: reason.is_some(),
            failovers: 0,
            detail: reason.map(|r| format!("{status} {r}")),
        }
    }

    #[test]
    fn percentiles_and_counts() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=50 {
            a.record(Kind::Deposit, &sent(ms, "200", None));
        }
        for ms in 51..=100 {
            b.record(Kind::Balance, &sent(ms, "503", Some("no-owner")));
        }
        a.merge(b);
        let p = a.percentiles();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(a.requests, 100);
        assert_eq!(a.failed, 50);
        assert_eq!(a.by_reason.get("no-owner"), Some(&50));
        assert_eq!(a.by_status.get("200"), Some(&50));
        // Only the first few failures are described; all are counted.
        assert_eq!(a.failure_samples.len(), MAX_SAMPLES);
        assert_eq!(a.failure_samples[0], "503 no-owner");
        assert_eq!(Stats::default().percentiles(), Percentiles::default());
    }
}
