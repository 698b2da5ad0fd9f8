//! The run's summary: printed for people, written as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::load::args::LoadConfig;
use crate::load::stats::{Percentiles, Stats};
use crate::load::verify::{Record, Verdict};

/// Everything a run measured and concluded.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Seed of the operation sequence.
    pub seed: u64,
    /// Run id (prefix of every op id).
    pub run_id: String,
    /// Number of targets.
    pub targets: usize,
    /// Workers.
    pub concurrency: usize,
    /// Requests of the load phase.
    pub requests: u64,
    /// Length of the load phase, in seconds.
    pub duration_seconds: f64,
    /// Requests per second of the load phase.
    pub throughput_rps: f64,
    /// Latency percentiles of the load phase, in milliseconds.
    pub latency_ms: Percentiles,
    /// Requests that were neither a 200 nor an expected business refusal.
    pub failed_requests: u64,
    /// `1 - failed/requests`.
    pub success_rate: f64,
    /// Count per kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Count per HTTP status (or `timeout` / `transport`).
    pub by_status: BTreeMap<String, u64>,
    /// Count per `x-shardmesh-error` reason (plus client-side `timeout` / `transport`).
    pub by_reason: BTreeMap<String, u64>,
    /// Counts by shard group (`watched`, `others`, `keyless`) with `--watch-shards`.
    pub groups: BTreeMap<String, crate::load::groups::Group>,
    /// Count per app error of non-200 answers.
    pub app_errors: BTreeMap<String, u64>,
    /// Requests moved to another target because one refused the connection.
    pub failovers: u64,
    /// The first failed requests, one line each: when, what, who answered, why.
    pub failure_samples: Vec<String>,
    /// Writes whose load-phase answer was ambiguous.
    pub ambiguous: u64,
    /// Of those, how many stayed unresolved.
    pub unresolved: u64,
    /// Requests the resolve phase sent.
    pub resend_requests: u64,
    /// Acknowledged writes re-sent to check they keep their first answer.
    pub replayed: u64,
    /// The money check.
    pub verification: Verdict,
}

// === impl Summary ===

impl Summary {
    /// Assembles the summary of a run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &LoadConfig,
        stats: &Stats,
        latency_ms: Percentiles,
        elapsed: Duration,
        records: &[Record],
        resend_requests: u64,
        replayed: u64,
        verification: Verdict,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ambiguous = records.iter().filter(|r| r.was_ambiguous).count() as u64;
        let unresolved = records
            .iter()
            .filter(|r| r.state == crate::load::verify::State::Ambiguous)
            .count() as u64;
        Summary {
            seed: cfg.seed,
            run_id: cfg.run_id.clone(),
            targets: cfg.targets.len(),
            concurrency: cfg.concurrency,
            requests: stats.requests,
            duration_seconds: secs,
            throughput_rps: stats.requests as f64 / secs,
            latency_ms,
            failed_requests: stats.failed,
            success_rate: crate::load::groups::success_rate(stats.failed, stats.requests),
            by_kind: stats.by_kind.clone(),
            by_status: stats.by_status.clone(),
            by_reason: stats.by_reason.clone(),
            groups: stats
                .groups
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.reported()))
                .collect(),
            app_errors: stats.app_errors.clone(),
            failovers: stats.failovers,
            failure_samples: stats.failure_samples.clone(),
            ambiguous,
            unresolved,
            resend_requests,
            replayed,
            verification,
        }
    }

    /// The report people read.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "bank-load: {} requests in {:.2} s = {:.0} req/s (concurrency {}, {} target(s), seed {}, run {})",
            self.requests, self.duration_seconds, self.throughput_rps, self.concurrency, self.targets, self.seed, self.run_id
        );
        let _ = writeln!(
            s,
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.max
        );
        let _ = writeln!(s, "by kind: {}", counts(&self.by_kind));
        let _ = writeln!(s, "by status: {}", counts(&self.by_status));
        let _ = writeln!(
            s,
            "errors by x-shardmesh-error reason: {}",
            counts(&self.by_reason)
        );
        for (name, g) in &self.groups {
            let _ = writeln!(
                s,
                "shard group {name}: {} requests, {} failed (success rate {:.3}%); by reason: {}",
                g.requests,
                g.failed,
                g.success_rate * 100.0,
                counts(&g.by_reason)
            );
        }
        let _ = writeln!(
            s,
            "app answers other than 200: {}",
            counts(&self.app_errors)
        );
        let _ = writeln!(
            s,
            "failed requests: {} (success rate {:.3}%); {} moved to another target after a refused connection",
            self.failed_requests,
            self.success_rate * 100.0,
            self.failovers
        );
        for sample in &self.failure_samples {
            let _ = writeln!(s, "  failed: {sample}");
        }
        let v = &self.verification;
        let _ = writeln!(
            s,
            "ambiguous writes: {} ({} re-sends, {} unresolved); re-sent {} acknowledged writes for same-answer check",
            self.ambiguous, self.resend_requests, self.unresolved, self.replayed
        );
        let _ = writeln!(
            s,
            "acknowledged: {} deposits, {} withdrawals, {} transfers; money expected {} cents, found {} cents",
            v.deposits_applied, v.withdrawals_applied, v.transfers_applied, v.expected_total, v.actual_total
        );
        if v.passed {
            let _ = writeln!(s, "verification PASSED");
        } else {
            let _ = writeln!(s, "verification FAILED:");
            for f in &v.failures {
                let _ = writeln!(s, "  - {f}");
            }
        }
        s
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
