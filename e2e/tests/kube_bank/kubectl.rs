//! `kubectl` and `helm` as a user runs them against the netns cluster, with
//! JSON answers read into the few facts the scenarios check (a pod's IP,
//! readiness, restarts, UID).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmesh_e2e::kube::ControlPlane;
use shardmesh_e2e::poll;

/// The control plane the suite drives, through its CLIs.
pub struct Kube {
    /// The running netns control plane (attached, never started here).
    pub cp: ControlPlane,
}

/// What the scenarios need to know about one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`: a replaced pod keeps its name, not its UID.
    pub uid: String,
    /// `status.podIP`, once the node agent wrote it.
    pub ip: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set (terminating).
    pub deleting: bool,
    /// Sum of `restartCount` over all containers (init containers included:
    /// the sidecar is a native sidecar).
    pub restarts: u64,
}

// === impl Pod ===

impl Pod {
    /// Reads a Pod object as `kubectl get -o json` prints it.
    pub fn from_json(v: &Value) -> Self {
        let status = &v["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let restarts = ["containerStatuses", "initContainerStatuses"]
            .iter()
            .flat_map(|k| status[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["restartCount"].as_u64())
            .sum();
        Pod {
            name: v["metadata"]["name"].as_str().unwrap_or_default().into(),
            uid: v["metadata"]["uid"].as_str().unwrap_or_default().into(),
            ip: status["podIP"].as_str().map(String::from),
            ready,
            deleting: !v["metadata"]["deletionTimestamp"].is_null(),
            restarts,
        }
    }

    /// Ready and not terminating: serving as far as Kubernetes knows.
    pub fn serving(&self) -> bool {
        self.ready && !self.deleting
    }

    /// The sidecar's admin listener (`/metrics`, `/debug/*`) on the pod IP.
    pub fn admin(&self) -> String {
        format!("{}:7402", self.ip.as_deref().unwrap_or("0.0.0.0"))
    }
}

// === impl Kube ===

impl Kube {
    /// Runs `kubectl ARGS`: its stdout, or stderr as the error.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        output(self.cp.kubectl().args(args), "kubectl", args)
    }

    /// Runs `kubectl ARGS` and panics with its stderr when it fails.
    pub fn must(&self, args: &[&str]) -> String {
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kubectl ARGS` with `input` on stdin (`apply -f -`).
    pub fn stdin(&self, args: &[&str], input: &str) -> Result<String, String> {
        let mut cmd = self.cp.kubectl();
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("kubectl: {e}"))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("kubectl stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "kubectl {}: {stdout}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs `helm ARGS` with the cluster's kubeconfig and caches.
    pub fn helm(&self, args: &[&str]) -> Result<String, String> {
        output(self.cp.helm().args(args), "helm", args)
    }

    /// `kubectl get ARGS -o json`, or `None` when it fails (not found).
    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.run(&all).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Pods of namespace `ns` matching the label `selector`, by name.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let list = self.get(&["get", "pods", "-n", ns, "-l", selector]);
        let mut pods: Vec<Pod> = list
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(Pod::from_json)
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// One pod, if it exists.
    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.get(&["get", "pod", "-n", ns, name])
            .map(|v| Pod::from_json(&v))
    }

    /// Waits until exactly `want` pods match `selector`, every one Ready and
    /// none terminating; the time from `since` and the pods, or why not
    /// after `timeout`.
    pub fn wait_serving(
        &self,
        ns: &str,
        selector: &str,
        want: usize,
        since: Instant,
        timeout: Duration,
    ) -> Result<(Duration, Vec<Pod>), String> {
        poll(timeout, || {
            let pods = self.pods(ns, selector);
            (pods.len() == want && pods.iter().all(Pod::serving)).then(|| (since.elapsed(), pods))
        })
        .ok_or_else(|| {
            format!(
                "{want} pods {selector} in {ns} not Ready within {timeout:?}: {:?}\n{}",
                self.pods(ns, selector),
                self.run(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"])
                    .unwrap_or_default()
            )
        })
    }
}

fn output(cmd: &mut Command, what: &str, args: &[&str]) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} {} failed: {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_is_read_from_its_json() {
        let v = json!({
            "metadata": {"name": "bank-1", "uid": "u1"},
            "status": {
                "podIP": "10.244.0.7",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"restartCount": 1}],
                "initContainerStatuses": [{"restartCount": 2}]
            }
        });
        let p = Pod::from_json(&v);
        assert_eq!(p.name, "bank-1");
        assert_eq!(p.ip.as_deref(), Some("10.244.0.7"));
        assert!(p.serving());
        assert_eq!(p.restarts, 3);
        assert_eq!(p.admin(), "10.244.0.7:7402");
        let mut v = v;
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(
            !Pod::from_json(&v).serving(),
            "terminating pods do not serve"
        );
    }
}
