//! `bank-load`: keyed traffic through the mesh, then the money check.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::bins;

/// Reasons the mesh answers with (docs/errors.md) that the bank scenarios
/// accept as the explanation of a failure.
pub const MESH_REASONS: [&str; 8] = [
    "overloaded",
    "circuit-open",
    "no-owner",
    "retry-budget-exhausted",
    "unavailable",
    "timeout",
    "unknown-service",
    "bad-request",
];

/// A finished `bank-load` run.
#[derive(Debug)]
pub struct LoadResult {
    /// Exit code (0: verification passed).
    pub code: i32,
    /// The JSON summary (`report::Summary`).
    pub summary: Value,
    /// What it printed.
    pub output: String,
}

impl LoadResult {
    /// Requests that failed (neither 200 nor an expected business refusal).
    pub fn failed(&self) -> u64 {
        self.summary["failed_requests"].as_u64().unwrap_or(u64::MAX)
    }

    /// Success rate of the load phase.
    pub fn success_rate(&self) -> f64 {
        self.summary["success_rate"].as_f64().unwrap_or(0.0)
    }

    /// Requests of the load phase.
    pub fn requests(&self) -> u64 {
        self.summary["requests"].as_u64().unwrap_or(0)
    }

    /// Success rate of shard group `name` (`watched`, `others`, `keyless`;
    /// see `bank-load --watch-shards`); `None` when the group saw no request.
    pub fn group_rate(&self, name: &str) -> Option<f64> {
        let g = &self.summary["groups"][name];
        (g["requests"].as_u64()? > 0).then(|| g["success_rate"].as_f64().unwrap_or(0.0))
    }

    /// Failures of shard group `name` by reason.
    pub fn group_reasons(&self, name: &str) -> Vec<(String, u64)> {
        self.summary["groups"][name]["by_reason"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Failures of shard group `name` that carry no mesh reason: the app
    /// answered (`app-…`) or the client gave up on its own
    /// (`client-timeout`). Requests in flight through a sidecar's outbound
    /// listener that is killed die with it (`client-transport`,
    /// `client-connect`): those are allowed.
    pub fn unexplained_failures(&self, name: &str) -> Vec<(String, u64)> {
        self.group_reasons(name)
            .into_iter()
            .filter(|(r, _)| r.starts_with("app-") || r == "client-timeout")
            .collect()
    }

    /// True when the money check passed.
    pub fn verified(&self) -> bool {
        self.code == 0 && self.summary["verification"]["passed"] == true
    }
}

/// A `bank-load` process running in the background.
pub struct Load {
    child: Option<Child>,
    json: PathBuf,
}

impl Load {
    /// Starts `bank-load` against `targets` (outbound listeners, `host:port`)
    /// with `args`; the summary goes to `dir/NAME.json`.
    pub fn start(dir: &Path, name: &str, targets: &[String], args: &[&str]) -> Self {
        let json = dir.join(format!("{name}.json"));
        let mut cmd = Command::new(bins::bin("bank-load"));
        for t in targets {
            cmd.arg("--target").arg(format!("http://{t}"));
        }
        cmd.args(args)
            .arg("--json")
            .arg(&json)
            .arg("--run-id")
            .arg(name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("start bank-load");
        Self {
            child: Some(child),
            json,
        }
    }

    /// Waits for the run to end (bank-load bounds its own phases).
    pub fn finish(mut self) -> LoadResult {
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("wait for bank-load");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = std::fs::read_to_string(&self.json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        LoadResult {
            code: out.status.code().unwrap_or(-1),
            summary,
            output,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `bank-load` to the end.
pub fn run(dir: &Path, name: &str, targets: &[String], args: &[&str]) -> LoadResult {
    Load::start(dir, name, targets, args).finish()
}
