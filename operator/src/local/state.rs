//! The run directory's two files: `state.json`, which the running `up`
//! rewrites as the mesh changes (read by `status`, `scale` and tests), and
//! `control.json`, which `scale` writes and `up` polls.
//!
//! ```text
//! target/shardmesh-local/
//!   latest -> run-1764087600          (symlink to the newest run)
//!   run-1764087600/
//!     state.json  control.json  keyring
//!     data/bank/shard-N.log           (shared by every replica, like a RWX volume)
//!     bank-0/{sidecar.yaml, sidecar.log, app.log}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LocalError, RUNS_DIR};

/// File name of the state file.
pub const STATE_FILE: &str = "state.json";
/// File name of the control file.
pub const CONTROL_FILE: &str = "control.json";
/// Name of the symlink to the newest run.
pub const LATEST: &str = "latest";

/// What a running `up` reports about its mesh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Pid of the `up` process.
    pub runner_pid: u32,
    /// The run directory.
    pub run_dir: String,
    /// True once every pod is ready and every shard has a serving owner.
    pub ready: bool,
    /// True once `up` has stopped everything.
    pub stopped: bool,
    /// The last `control.json` sequence number applied.
    pub control_seq: u64,
    /// Services in mesh order.
    pub services: Vec<ServiceState>,
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Name.
    pub name: String,
    /// Replicas wanted now.
    pub replicas: u32,
    /// Shards.
    pub shards: u32,
    /// Pods that exist (running, starting, restarting or stopping).
    pub pods: Vec<PodState>,
}

/// One pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Ordinal.
    pub ordinal: u32,
    /// Network namespace, when pods run in namespaces.
    pub netns: Option<String>,
    /// Outbound listener (where the app, or you, send requests).
    pub outbound: String,
    /// Inbound listener.
    pub inbound: String,
    /// Admin listener.
    pub admin: String,
    /// Gossip address.
    pub gossip: String,
    /// The app's address.
    pub app: String,
    /// starting, running, restarting, stopping, stopped.
    pub phase: String,
    /// The sidecar's `/ready`.
    pub ready: bool,
    /// Shards it serves (from `/debug/shards`), when known.
    pub shards_owned: Option<u32>,
    /// Inbound requests per second over the last interval.
    pub rps: f64,
    /// Restarts so far.
    pub restarts: u32,
    /// How the last crashed process ended.
    pub last_exit: Option<String>,
    /// Pid (and process group) of the app.
    pub app_pid: Option<u32>,
    /// Pid (and process group) of the sidecar.
    pub sidecar_pid: Option<u32>,
    /// Log directory of the pod.
    pub dir: String,
}

/// What `scale` asks of `up`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// Grows with every change.
    pub seq: u64,
    /// Replicas wanted per service.
    pub replicas: BTreeMap<String, u32>,
}

/// Writes `value` as JSON to `path` atomically (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LocalError> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| LocalError::State(format!("cannot encode {}: {e}", path.display())))?;
    write_atomic(path, &text, None)
}

/// Writes `bytes` to `path` through a temp file and a rename, so a reader
/// never sees half a file; `mode` sets the permissions before the rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .map_err(|e| LocalError::io(format!("cannot write {}", tmp.display()), e))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| LocalError::io(format!("cannot protect {}", tmp.display()), e))?;
    }
    std::fs::rename(&tmp, path)
        .map_err(|e| LocalError::io(format!("cannot write {}", path.display()), e))
}

/// Reads JSON from `path`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LocalError> {
    let text = std::fs::read(path)
        .map_err(|e| LocalError::io(format!("cannot read {}", path.display()), e))?;
    serde_json::from_slice(&text)
        .map_err(|e| LocalError::State(format!("{} is not valid: {e}", path.display())))
}

/// The run directory to use: `explicit`, else the `latest` link under [`RUNS_DIR`].
pub fn resolve_run_dir(explicit: Option<PathBuf>) -> Result<PathBuf, LocalError> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    let latest = Path::new(RUNS_DIR).join(LATEST);
    std::fs::canonicalize(&latest).map_err(|e| {
        LocalError::io(
            format!(
                "no local run found at {} (start one with `shardmesh-operator local up FILE`, or pass --run-dir)",
                latest.display()
            ),
            e,
        )
    })
}

/// Points `RUNS_DIR/latest` at `run_dir` (best effort).
pub fn mark_latest(run_dir: &Path) {
    let Some(parent) = run_dir.parent() else {
        return;
    };
    let Some(name) = run_dir.file_name() else {
        return;
    };
    let link = parent.join(LATEST);
    let _ = std::fs::remove_file(&link);
    let _ = std::os::unix::fs::symlink(name, &link);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("shardmesh-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        let state = RunState {
            runner_pid: 7,
            services: vec![ServiceState {
                name: "bank".into(),
                replicas: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        write_json(&path, &state).unwrap();
        let back: RunState = read_json(&path).unwrap();
        assert_eq!(back, state);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
