//! A pod's network namespace, found by its IP: the node agent names them
//! itself (`ip netns add`), so the suite asks each namespace which address
//! its `eth0` holds instead of guessing the name. Used to crash a pod the
//! way a node would see it: every process in the namespace SIGKILLed.

use std::process::Command;

/// The named network namespaces (`ip netns list` prints `NAME (id: N)`).
fn names(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// Whether `ip -o -4 addr` output holds `ip` as an address.
fn holds(addrs: &str, ip: &str) -> bool {
    let needle = format!(" {ip}/");
    addrs.lines().any(|l| l.contains(&needle))
}

fn ip_cmd(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

/// The namespace whose interface holds `ip`.
pub fn of_ip(ip: &str) -> Option<String> {
    names(&ip_cmd(&["netns", "list"]))
        .into_iter()
        .find(|ns| holds(&ip_cmd(&["-n", ns, "-o", "-4", "addr", "show"]), ip))
}

/// SIGKILLs every process in namespace `ns` (a crash of the whole pod:
/// app and sidecar at once); the PIDs killed.
pub fn kill_all(ns: &str) -> Vec<u32> {
    let pids: Vec<u32> = ip_cmd(&["netns", "pids", ns])
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_addresses_are_parsed() {
        let list = "smpod-bank-1 (id: 4)\nsmpod-bank-0 (id: 3)\nother\n";
        assert_eq!(names(list), ["smpod-bank-1", "smpod-bank-0", "other"]);
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                     2: eth0    inet 10.244.0.12/24 brd 10.244.0.255 scope global eth0\n";
        assert!(holds(addrs, "10.244.0.12"));
        assert!(!holds(addrs, "10.244.0.1"), "a prefix of another address");
    }
}
