//! Load for as long as a Kubernetes operation takes: `bank-load` runs back
//! to back in short segments until the scenario says stop, so a rollout
//! that takes 20 s or 60 s is under load the whole time and the suite never
//! waits for a fixed guess. Each segment ends with its own money check; the
//! scenario passes the check only if every segment did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use shardmesh_e2e::load::{self, LoadResult, MESH_REASONS};

/// Seconds of one segment's load phase.
pub const SEGMENT_SECS: u64 = 8;
/// Most segments of one series (a bound on any scenario's load: 20 × 8 s).
const MAX_SEGMENTS: usize = 20;

/// The bank's answers that are decisions, not failures.
const BUSINESS_REFUSALS: [&str; 1] = ["insufficient-funds"];
/// The bank's answers to a transfer whose saga step failed through the mesh.
const SAGA_STEP_FAILED: [&str; 2] = ["app-transfer-pending", "app-transfer-failed"];

/// Segments of `bank-load` running in the background.
pub struct Series {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Vec<LoadResult>>>,
}

/// What every segment of a series measured, together.
pub struct Traffic {
    /// One result per segment, in order.
    pub runs: Vec<LoadResult>,
}

// === impl Series ===

impl Series {
    /// Starts segments named `NAME-N` against `target` (an outbound listener,
    /// `host:port`) with `args` (`--duration` is the segment's).
    pub fn start(dir: &Path, name: &str, target: &str, args: &[&str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, name, target): (PathBuf, String, String) =
            (dir.into(), name.into(), target.into());
        let mut seg_args: Vec<String> = vec!["--duration".into(), SEGMENT_SECS.to_string()];
        seg_args.extend(args.iter().map(|a| a.to_string()));
        let flag = Arc::clone(&stop);
        let worker = std::thread::spawn(move || {
            let args: Vec<&str> = seg_args.iter().map(String::as_str).collect();
            let mut runs = Vec::new();
            for n in 0..MAX_SEGMENTS {
                let run = load::run(
                    &dir,
                    &format!("{name}-{n}"),
                    std::slice::from_ref(&target),
                    &args,
                );
                runs.push(run);
                if flag.load(Ordering::SeqCst) {
                    break;
                }
            }
            runs
        });
        Series {
            stop,
            worker: Some(worker),
        }
    }

    /// Lets the running segment end, then returns every segment's result.
    pub fn finish(mut self) -> Traffic {
        self.stop.store(true, Ordering::SeqCst);
        let runs = self
            .worker
            .take()
            .map(|w| w.join().expect("the load thread"))
            .unwrap_or_default();
        Traffic { runs }
    }
}

impl Drop for Series {
    fn drop(&mut self) {
        // A failed scenario: the running segment ends on its own (bounded).
        self.stop.store(true, Ordering::SeqCst);
    }
}

// === impl Traffic ===

impl Traffic {
    fn sum(&self, f: impl Fn(&LoadResult) -> u64) -> u64 {
        self.runs.iter().map(f).sum()
    }

    /// Requests of every load phase.
    pub fn requests(&self) -> u64 {
        self.sum(LoadResult::requests)
    }

    /// Requests that failed (neither 200 nor a business refusal).
    pub fn failed(&self) -> u64 {
        self.sum(LoadResult::failed)
    }

    /// `1 - failed / requests` over all segments.
    pub fn success_rate(&self) -> f64 {
        rate(self.failed(), self.requests())
    }

    /// Every segment passed the money check.
    pub fn verified(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(LoadResult::verified)
    }

    /// Failures by reason: the mesh's (`x-shardmesh-error`), the client's
    /// own (`timeout`, `transport`), and the app's failure answers as
    /// `app-ERROR` (its business refusals are not failures).
    pub fn by_reason(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for run in &self.runs {
            let mesh = run.summary["by_reason"].as_object().into_iter().flatten();
            let app = run.summary["app_errors"].as_object().into_iter().flatten();
            let app = app
                .filter(|(k, _)| !BUSINESS_REFUSALS.contains(&k.as_str()))
                .map(|(k, v)| (format!("app-{k}"), v));
            for (k, v) in mesh.map(|(k, v)| (k.clone(), v)).chain(app) {
                *all.entry(k).or_insert(0) += v.as_u64().unwrap_or(0);
            }
        }
        all
    }

    /// Failures whose reason is not one the mesh answers with. A transfer
    /// the bank answers `transfer-pending` (a saga step not finished) or
    /// `transfer-failed` (the deposit step failed, the withdrawal was
    /// compensated, nothing moved) had a saga step fail through the mesh
    /// (its message names the step's mesh reason, e.g. `deposit failed:
    /// timeout` while the deposit's owner was stopped): explained too.
    pub fn without_mesh_reason(&self) -> BTreeMap<String, u64> {
        let mut all = self.by_reason();
        all.retain(|k, _| {
            !MESH_REASONS.contains(&k.as_str()) && !SAGA_STEP_FAILED.contains(&k.as_str())
        });
        all
    }

    /// Success rate of shard group `name` (`bank-load --watch-shards`).
    pub fn group_rate(&self, name: &str) -> Option<f64> {
        let field = |r: &LoadResult, f: &str| r.summary["groups"][name][f].as_u64().unwrap_or(0);
        let requests = self.sum(|r| field(r, "requests"));
        (requests > 0).then(|| rate(self.sum(|r| field(r, "failed")), requests))
    }

    /// Failures of group `name` with no mesh reason (`LoadResult::unexplained_failures`).
    pub fn unexplained(&self, name: &str) -> Vec<(String, u64)> {
        self.runs
            .iter()
            .flat_map(|r| r.unexplained_failures(name))
            .collect()
    }

    /// What the segments printed, for a failure message.
    pub fn output(&self) -> String {
        self.runs
            .iter()
            .map(|r| r.output.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn rate(failed: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        1.0 - failed as f64 / requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(requests: u64, failed: u64, reasons: serde_json::Value, passed: bool) -> LoadResult {
        LoadResult {
            code: if passed { 0 } else { 1 },
            summary: json!({
                "requests": requests,
                "failed_requests": failed,
                "by_reason": reasons,
                "app_errors": {"insufficient-funds": 3, "transfer-pending": 1, "transfer-failed": 1, "stale-epoch": 2},
                "groups": {"watched": {"requests": requests, "failed": failed}},
                "verification": {"passed": passed}
            }),
            output: String::new(),
        }
    }

    #[test]
    fn segments_add_up() {
        let t = Traffic {
            runs: vec![
                result(1000, 0, json!({}), true),
                result(1000, 10, json!({"no-owner": 8, "client-timeout": 2}), true),
            ],
        };
        assert_eq!(t.requests(), 2000);
        assert!((t.success_rate() - 0.995).abs() < 1e-9);
        assert!(t.verified());
        assert_eq!(t.by_reason()["no-owner"], 8);
        assert_eq!(t.by_reason()["app-transfer-pending"], 2);
        assert_eq!(t.by_reason()["app-transfer-failed"], 2);
        assert!(!t.by_reason().contains_key("app-insufficient-funds"));
        assert_eq!(
            t.without_mesh_reason().into_iter().collect::<Vec<_>>(),
            [
                ("app-stale-epoch".to_string(), 4),
                ("client-timeout".to_string(), 2)
            ]
        );
        assert_eq!(t.group_rate("watched"), Some(t.success_rate()));
        assert_eq!(t.group_rate("others"), None);
    }

    #[test]
    fn one_failed_money_check_fails_the_series() {
        let t = Traffic {
            runs: vec![
                result(10, 0, json!({}), true),
                result(10, 0, json!({}), false),
            ],
        };
        assert!(!t.verified());
        assert!(!Traffic { runs: vec![] }.verified(), "no load is no proof");
    }
}
