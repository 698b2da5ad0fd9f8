//! The `bank` command line: flags, environment, defaults.
//!
//! | flag | env | default |
//! | --- | --- | --- |
//! | `--listen ADDR` | `BANK_LISTEN` | `0.0.0.0:8080` |
//! | `--data DIR` | `BANK_DATA` | `./data/bank` (shared by all replicas: see README) |
//! | `--pod NAME` | `SHARDMESH_POD_NAME` | the host name |
//! | `--outbound URL` | `SHARDMESH_OUTBOUND` | `http://127.0.0.1:7400` |
//! | `--standalone N` | `BANK_STANDALONE` | off (mesh mode) |
//!
//! Hidden, for tests and fault drills:
//! - `--fault lose-every-nth-deposit=N` makes the app lose deposits on
//!   purpose, to prove that `bank-load` catches it;
//! - `--fault delay-ms=N` delays every account and transfer request by N ms
//!   (a slow replica: the machine has no netem, so delay is simulated here);
//! - `--debug-api` enables `PUT /debug/delay-ms {"ms": N}` to change that
//!   delay at run time (a replica that slows down and recovers).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::bank::{Fault, Mode};

/// Largest shard count accepted in standalone mode.
const MAX_SHARDS: u32 = 4096;

/// Settings of the `bank` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the shard logs.
    pub data: PathBuf,
    /// Pod name (part of owner tokens).
    pub pod: String,
    /// Outbound sidecar URL for transfers.
    pub outbound: String,
    /// Mesh or standalone.
    pub mode: Mode,
    /// Injected bank fault.
    pub fault: Option<Fault>,
    /// Delay added to every account and transfer request, in milliseconds.
    pub delay_ms: u64,
    /// Serve `PUT /debug/delay-ms`.
    pub debug_api: bool,
}

// === impl AppConfig ===

impl AppConfig {
    /// Parses flags (`args` without the program name) over `env` and defaults.
    pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut listen = env("BANK_LISTEN").unwrap_or_else(|| "0.0.0.0:8080".to_string());
        let mut data = env("BANK_DATA").unwrap_or_else(|| "./data/bank".to_string());
        let mut pod = env("SHARDMESH_POD_NAME").unwrap_or_else(hostname);
        let mut outbound =
            env("SHARDMESH_OUTBOUND").unwrap_or_else(|| "http://127.0.0.1:7400".to_string());
        let mut standalone = env("BANK_STANDALONE");
        let mut fault = None;
        let mut delay_ms = 0;
        let mut debug_api = false;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--listen" => listen = value()?,
                "--data" => data = value()?,
                "--pod" => pod = value()?,
                "--outbound" => outbound = value()?,
                "--standalone" => standalone = Some(value()?),
                "--fault" => match parse_fault(&value()?)? {
                    FaultFlag::Bank(f) => fault = Some(f),
                    FaultFlag::DelayMs(ms) => delay_ms = ms,
                },
                "--debug-api" => debug_api = true,
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        let listen = listen
            .parse()
            .map_err(|e| format!("--listen {listen}: {e}"))?;
        let mode = match standalone {
            None => Mode::Mesh,
            Some(n) => match n.parse::<u32>() {
                Ok(shards) if (1..=MAX_SHARDS).contains(&shards) => Mode::Standalone { shards },
                _ => {
                    return Err(format!(
                        "--standalone needs a shard count in 1..={MAX_SHARDS}"
                    ))
                }
            },
        };
        if !outbound.starts_with("http://") {
            return Err(format!("--outbound {outbound}: must be an http:// URL"));
        }
        if pod.is_empty() || pod.contains('/') {
            return Err("pod name must be non-empty and contain no '/'".to_string());
        }
        Ok(AppConfig {
            listen,
            data: PathBuf::from(data),
            pod,
            outbound,
            mode,
            fault,
            delay_ms,
            debug_api,
        })
    }
}

/// Usage text of `bank`.
pub const USAGE: &str =
    "usage: bank [--listen ADDR] [--data DIR] [--pod NAME] [--outbound URL] [--standalone SHARDS]";

/// Longest injectable delay.
pub const MAX_DELAY_MS: u64 = 60_000;

/// One `--fault` flag.
enum FaultFlag {
    Bank(Fault),
    DelayMs(u64),
}

fn parse_fault(s: &str) -> Result<FaultFlag, String> {
    match s.split_once('=') {
        Some(("lose-every-nth-deposit", n)) => match n.parse::<u64>() {
            Ok(n) if n > 0 => Ok(FaultFlag::Bank(Fault::LoseEveryNthDeposit(n))),
            _ => Err("lose-every-nth-deposit needs N > 0".to_string()),
        },
        Some(("delay-ms", n)) => match n.parse::<u64>() {
            Ok(n) if n <= MAX_DELAY_MS => Ok(FaultFlag::DelayMs(n)),
            _ => Err(format!("delay-ms needs N in 0..={MAX_DELAY_MS}")),
        },
        _ => Err(format!("unknown fault {s}")),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bank".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_override_env_and_defaults() {
        let env = |k: &str| (k == "BANK_DATA").then(|| "/env/data".to_string());
        let c =
            AppConfig::parse(&args("--listen 127.0.0.1:0 --standalone 8 --pod p-0"), &env).unwrap();
        assert_eq!(c.data, PathBuf::from("/env/data"));
        assert_eq!(c.mode, Mode::Standalone { shards: 8 });
        assert_eq!(c.pod, "p-0");
        assert_eq!(c.outbound, "http://127.0.0.1:7400");
        assert_eq!(c.fault, None);
        let c = AppConfig::parse(&args("--fault lose-every-nth-deposit=5"), &|_| None).unwrap();
        assert_eq!(c.fault, Some(Fault::LoseEveryNthDeposit(5)));
        assert_eq!(c.mode, Mode::Mesh);
        let c = AppConfig::parse(&args("--fault delay-ms=2000 --debug-api"), &|_| None).unwrap();
        assert_eq!((c.delay_ms, c.debug_api), (2000, true));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        for bad in [
            "--standalone 0",
            "--listen nope",
            "--bogus",
            "--listen",
            "--fault x=1",
            "--fault delay-ms=999999",
        ] {
            assert!(AppConfig::parse(&args(bad), &|_| None).is_err(), "{bad}");
        }
    }
}
