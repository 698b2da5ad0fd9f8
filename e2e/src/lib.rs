//! Helpers shared by the e2e tests: the release binaries, a local mesh run by
//! the real `shardmesh-operator local up` process, `bank-load`, and a tiny
//! blocking HTTP client that reports latency and the mesh's headers.
//!
//! ## Layout
//! - [`bins`]: builds (once per test binary) and locates the release binaries.
//! - [`mesh`]: [`mesh::Mesh`], a `local up` process with its run directory, and
//!   the manifests the scenarios use.
//! - [`http`]: [`http::request`], and admin-endpoint helpers.
//! - [`load`]: runs `bank-load` and reads its JSON summary.
//! - [`dns`]: a one-query DNS client for the cluster DNS of the pod suites.
//! - [`netns`]: network namespaces per pod for loss and partition scenarios (root).
//! - [`jaeger`]: a real Jaeger v2 (OTLP receiver + query API) for the tracing tests.
//! - [`kube`]: a real Kubernetes control plane (`scripts/kube/cluster`) for the
//!   tests gated on `SHARDMESH_KUBE_E2E=1`, and its audit log.
//! - [`node`]: the node agent (`shardmesh-node-agent`): runs the pods bound to
//!   one Node as processes in per-pod network and mount namespaces.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bins;
pub mod dns;
pub mod http;
pub mod jaeger;
pub mod kube;
pub mod load;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod shards;
pub mod tally;

use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, or `None` after `timeout`.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when this process may create network namespaces (root).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
