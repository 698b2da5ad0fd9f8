//! A local mesh run by the real `shardmesh-operator local up` process, as a
//! user runs it, with the run directory's state file as the source of pids
//! and addresses. Dropping a [`Mesh`] stops it (SIGTERM, bounded) and kills
//! anything left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bins, poll};

/// A running `local up`.
pub struct Mesh {
    /// The `up` process.
    child: Option<Child>,
    /// The scenario's directory (manifest, logs, summaries).
    pub dir: PathBuf,
    /// The run directory of `up`.
    pub run_dir: PathBuf,
    /// When `up` was started.
    pub started: Instant,
}

/// The bank manifest used by the scenarios: `replicas` pods running the
/// release `bank` with `bank_args`, and `spec_extra` (YAML lines indented by
/// two spaces) appended to the spec.
pub fn bank_manifest(replicas: u32, bank_args: &str, spec_extra: &str) -> String {
    let bank = bins::bin("bank");
    format!(
        "apiVersion: shardmesh.io/v1alpha1\n\
         kind: ShardedService\n\
         metadata:\n  name: bank\n  annotations:\n    shardmesh.io/local-command: \"{} {bank_args}\"\n\
         spec:\n  replicas: {replicas}\n  appPort: 8080\n  routing:\n    keyFromPath: \"/accounts/{{key}}\"\n\
         {spec_extra}\
         \n  template:\n    spec:\n      containers:\n        - name: bank\n          image: ghcr.io/shardmesh/bank:0.1.0\n",
        bank.display()
    )
}

impl Mesh {
    /// Starts `local up` on `manifest` with pods at `127.block.*` and `extra` flags.
    pub fn up(name: &str, manifest: &str, block: u8, extra: &[&str]) -> Self {
        let dir = bins::target_dir()
            .join("e2e")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scenario dir");
        let file = dir.join("manifest.yaml");
        std::fs::write(&file, manifest).expect("write manifest");
        let run_dir = dir.join("run");
        let log = std::fs::File::create(dir.join("up.log")).expect("up.log");
        let err = log.try_clone().expect("up.log handle");
        let child = Command::new(bins::bin("shardmesh-operator"))
            .current_dir(bins::workspace())
            .args(["local", "up"])
            .arg(&file)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--loopback-block")
            .arg(block.to_string())
            .arg("--sidecar")
            .arg(bins::bin("shardmesh-sidecar"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start local up");
        Self {
            child: Some(child),
            dir,
            run_dir,
            started: Instant::now(),
        }
    }

    /// The state file (Null until the first write).
    pub fn state(&self) -> Value {
        std::fs::read_to_string(self.run_dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// What `up` printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default()
    }

    /// Waits until `up` has printed `needle` (its log trails the state file,
    /// which is rewritten on its own tick); whether it did within `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Waits until every pod is ready and every shard served; the time since start.
    pub fn wait_ready(&self, timeout: Duration) -> Duration {
        let ok = poll(timeout, || (self.state()["ready"] == true).then_some(()));
        assert!(
            ok.is_some(),
            "mesh not ready after {timeout:?}; up.log:\n{}",
            self.log()
        );
        self.started.elapsed()
    }

    /// The pods of `service` in the state file.
    pub fn pods(&self, service: &str) -> Vec<Value> {
        self.state()["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == service)
            .flat_map(|s| s["pods"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Field `field` (e.g. `outbound`, `admin`) of pod `pod`.
    pub fn pod_field(&self, pod: &str, field: &str) -> String {
        self.state()["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["pods"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"] == pod)
            .and_then(|p| p[field].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no {field} for pod {pod}"))
    }

    /// Pid of pod `pod`'s `app` or `sidecar` (its process group id).
    pub fn pid(&self, pod: &str, which: &str) -> Option<u32> {
        self.pods(pod.rsplit_once('-').map_or(pod, |(s, _)| s))
            .into_iter()
            .find(|p| p["name"] == pod)
            .and_then(|p| p[format!("{which}_pid")].as_u64())
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Runs `shardmesh-operator local ARGS --run-dir RUN`; `(success, output)`.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(bins::bin("shardmesh-operator"))
            .current_dir(bins::workspace())
            .arg("local")
            .args(args)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .output()
            .expect("run shardmesh-operator local");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `local scale SERVICE N` (waits for readiness); panics on failure.
    pub fn scale(&self, service: &str, replicas: u32) -> Duration {
        let start = Instant::now();
        let n = replicas.to_string();
        let (ok, out) = self.cli(&["scale", service, &n, "--wait", "60"]);
        assert!(
            ok,
            "scale {service} {replicas} failed: {out}\n{}",
            self.log()
        );
        start.elapsed()
    }

    /// Sends `signal` (e.g. `KILL`, `STOP`, `CONT`) to pod `pod`'s `which` process group.
    pub fn signal(&self, pod: &str, which: &str, signal: &str) {
        let pid = self
            .pid(pod, which)
            .unwrap_or_else(|| panic!("{pod} has no {which}"));
        signal_group(pid, signal);
    }

    /// Sends `signal` (e.g. `HUP`, `KILL`) to the `up` process itself.
    pub fn signal_runner(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
        }
    }

    /// Waits at most `timeout` for `up` to exit; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        poll(timeout, || child.try_wait().ok().flatten())
    }

    /// Stops `up` like Ctrl-C does; returns how long it took and the pids still alive after.
    pub fn stop(mut self) -> (Duration, Vec<u32>) {
        let pids = all_pids(&self.state());
        let took = self.terminate();
        let alive = pids.into_iter().filter(|p| alive(*p)).collect();
        (took, alive)
    }

    fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = poll(Duration::from_secs(20), || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let took = start.elapsed();
        // Belt and braces: nothing of this run may outlive the test.
        for pid in all_pids(&self.state()) {
            if alive(pid) {
                signal_group(pid, "KILL");
            }
        }
        took
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Every app and sidecar pid in a state document.
pub fn all_pids(state: &Value) -> Vec<u32> {
    state["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["pods"].as_array().cloned().unwrap_or_default())
        .flat_map(|p| [p["app_pid"].as_u64(), p["sidecar_pid"].as_u64()])
        .flatten()
        .filter_map(|p| u32::try_from(p).ok())
        .collect()
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let stat = Path::new("/proc").join(pid.to_string()).join("stat");
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// `kill -SIGNAL -- -PGID`.
pub fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .status();
}

/// Resident memory of `pid` in KiB (0 when unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
