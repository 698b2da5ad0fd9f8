//! A pod's processes, found by its IP: every process whose network
//! namespace holds the pod's address. Not by the agent's `ip netns` names:
//! the agent and this test each run under their own `ip netns exec`, i.e.
//! in separate mount namespaces, so the bind mounts behind the agent's
//! `/run/netns/smpod-*` are not visible here. `/proc/PID/ns/net` is. Used
//! to crash a pod the way a node would see it (every process SIGKILLed) or
//! to freeze it (SIGSTOP, then SIGCONT).

use std::collections::BTreeMap;
use std::process::Command;

/// Whether `ip -o -4 addr` output holds `ip` as an address.
fn holds(addrs: &str, ip: &str) -> bool {
    let needle = format!(" {ip}/");
    addrs.lines().any(|l| l.contains(&needle))
}

/// Every process by network namespace (`net:[INODE]`).
fn by_netns() -> BTreeMap<String, Vec<u32>> {
    let mut all: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
            all.entry(ns.display().to_string()).or_default().push(pid);
        }
    }
    all
}

/// The IPv4 addresses of the network namespace of `pid`.
fn addresses_of(pid: u32) -> String {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// The processes of the pod whose network namespace holds `ip`.
pub fn pids_of_ip(ip: &str) -> Vec<u32> {
    by_netns()
        .into_values()
        .find(|pids| pids.first().is_some_and(|p| holds(&addresses_of(*p), ip)))
        .unwrap_or_default()
}

/// SIGKILLs `pids` (a crash of the whole pod: app and sidecar at once).
pub fn kill_all(pids: &[u32]) {
    signal_all(pids, "KILL");
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to every one of `pids`.
pub fn signal_all(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_matched_whole() {
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                     2: eth0    inet 10.244.0.12/24 brd 10.244.0.255 scope global eth0\n";
        assert!(holds(addrs, "10.244.0.12"));
        assert!(!holds(addrs, "10.244.0.1"), "a prefix of another address");
    }

    #[test]
    fn this_process_is_in_some_network_namespace() {
        let me = std::process::id();
        assert!(by_netns().values().any(|pids| pids.contains(&me)));
    }
}
