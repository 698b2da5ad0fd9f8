//! Real `shardmesh-sidecar` processes for tests that need crashes (kill -9)
//! and signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shardmesh-sidecar");

/// A running sidecar process and the addresses it logged.
pub struct SidecarProc {
    pub child: Child,
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub gossip: Option<SocketAddr>,
}

impl SidecarProc {
    /// Starts the binary with `config` and `env`, waiting for its startup line.
    pub fn spawn(config: &Path, env: &[(&str, String)]) -> Self {
        Self::spawn_with(Command::new(BIN), config, env)
    }

    /// Like [`Self::spawn`] with a prepared command (e.g. `ip netns exec NS BIN`).
    pub fn spawn_with(mut cmd: Command, config: &Path, env: &[(&str, String)]) -> Self {
        cmd.arg("--config")
            .arg(config)
            .env("SHARDMESH_LOG_FORMAT", "json")
            .env("SHARDMESH_WORKER_THREADS", "1")
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sidecar");
        let _ = &mut cmd;
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let started: serde_json::Value = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("sidecar exited before starting"),
            };
            if line.contains("sidecar started") {
                break serde_json::from_str(&line).expect("json log line");
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = |k: &str| started[k].as_str().and_then(|s| s.parse().ok());
        Self {
            outbound: addr("outbound").expect("outbound"),
            inbound: addr("inbound").expect("inbound"),
            admin: addr("admin").expect("admin"),
            gossip: addr("gossip"),
            child,
        }
    }

    /// kill -9.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SidecarProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmesh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A keyring file with one fixed test key (base64 of 32 bytes).
pub fn keyring_file(dir: &Path, key_byte: u8) -> PathBuf {
    let path = dir.join(format!("keyring-{key_byte}"));
    let key = [key_byte; 32];
    std::fs::write(&path, format!("{}\n", base64_encode(&key))).expect("keyring");
    path
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes the config of a gossiping `bank` member with fast failure
/// detection (probe 100 ms) on 127.0.0.1 port 0 listeners.
pub fn gossip_config(
    dir: &Path,
    pod: &str,
    app: std::net::SocketAddr,
    keyring: &Path,
    shards: u32,
    grace_ms: u64,
) -> PathBuf {
    let path = dir.join(format!("{pod}.yaml"));
    std::fs::write(
        &path,
        format!(
            "pod: {{ name: {pod}, service: bank }}\n\
             app: {{ address: \"{app}\" }}\n\
             listeners: {{ outbound: \"127.0.0.1:0\", inbound: \"127.0.0.1:0\", admin: \"127.0.0.1:0\", gossip: \"127.0.0.1:0\" }}\n\
             shutdownGraceMs: {grace_ms}\n\
             services:\n  - name: bank\n    shards: {shards}\n    routing: {{ keyFromPath: \"/accounts/{{key}}\" }}\n\
             membership:\n  gossip:\n    enabled: true\n    probeIntervalMs: 100\n    probeTimeoutMs: 50\n    suspicionMultiplier: 2\n    pushPullIntervalMs: 1000\n    keyringFile: \"{}\"\n",
            keyring.display()
        ),
    )
    .expect("write config");
    path
}
