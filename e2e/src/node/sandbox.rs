//! A pod's network sandbox: its own network namespace `smpod-<uid>` with
//! `lo` and `eth0` (one end of a veth pair whose other end joins the node's
//! bridge), an address from the pod CIDR and a default route via the
//! gateway; plus the pod's `resolv.conf`, `hosts` and `hostname` files.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::config::Config;

/// The prefix of every network namespace the agent makes.
pub const NETNS_PREFIX: &str = "smpod-";

/// The namespace-name prefix of one agent: `smpod-<hash of its state dir>-`.
/// `/run/netns` is shared by every cluster on the machine; an agent removes
/// only the stale namespaces of its own prefix, never another cluster's pods.
pub fn scope(state_dir: &Path) -> String {
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let hash = xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_encoded_bytes());
    format!("{NETNS_PREFIX}{:06x}-", hash & 0xff_ffff)
}

/// One pod's network namespace and veth.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// `ip netns` name.
    pub netns: String,
    /// The bridge-side veth.
    pub host_veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

async fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The short id of a pod for interface names (veth names have 15 bytes).
fn short(uid: &str) -> String {
    uid.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect()
}

impl Sandbox {
    /// The sandbox a pod with `uid` gets from the agent of `scope` (names only).
    pub fn named(scope: &str, uid: &str, ip: Ipv4Addr) -> Self {
        let id = short(uid);
        Self {
            netns: format!("{scope}{id}"),
            host_veth: format!("smv{id}"),
            ip,
        }
    }

    /// The namespace file `nsenter --net=` takes.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// Creates the namespace and wires it to the bridge (undoing a half-made one first).
    pub async fn create(&self, cfg: &Config, prefix: u8) -> Result<(), String> {
        self.destroy().await;
        let ns = self.netns.as_str();
        let peer = self.host_veth.replacen("smv", "smp", 1);
        let result = async {
            ip(&["netns", "add", ns]).await?;
            ip(&[
                "link",
                "add",
                &self.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                ns,
            ])
            .await?;
            ip(&["-n", ns, "link", "set", &peer, "name", "eth0"]).await?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/{prefix}", self.ip),
                "dev",
                "eth0",
            ])
            .await?;
            ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
            ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
            ip(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &cfg.gateway.to_string(),
            ])
            .await?;
            ip(&["link", "set", &self.host_veth, "master", &cfg.bridge]).await?;
            ip(&["link", "set", &self.host_veth, "up"]).await?;
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = result {
            self.destroy().await;
            return Err(format!("FailedCreatePodSandBox: {e}"));
        }
        Ok(())
    }

    /// Kills whatever still runs in the namespace, deletes it and the veth.
    pub async fn destroy(&self) {
        remove_netns(&self.netns).await;
        let _ = ip(&["link", "del", &self.host_veth]).await;
    }
}

/// Kills the processes of namespace `name` and deletes it.
async fn remove_netns(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]).await {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    let _ = ip(&["netns", "del", name]).await;
}

/// Deletes every namespace of `scope` (and its processes) left by an agent
/// that did not stop cleanly, and every pod veth on this node's bridge side;
/// returns the namespaces' names.
pub async fn remove_stale(scope: &str) -> Vec<String> {
    let list = ip(&["netns", "list"]).await.unwrap_or_default();
    let mut removed = Vec::new();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with(scope) {
            remove_netns(name).await;
            removed.push(name.to_string());
        }
    }
    let links = ip(&["-o", "link", "show"]).await.unwrap_or_default();
    for line in links.lines() {
        if let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) {
            if name.starts_with("smv") {
                let _ = ip(&["link", "del", name]).await;
            }
        }
    }
    removed
}

/// The pod's `resolv.conf`: the cluster DNS and kubelet's search path.
pub fn resolv_conf(cfg: &Config, namespace: &str) -> String {
    let d = &cfg.cluster_domain;
    format!(
        "nameserver {}\nsearch {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n",
        cfg.cluster_dns
    )
}

/// The pod's `/etc/hosts`: localhost and its own name (FQDN with a subdomain).
pub fn hosts(ip: Ipv4Addr, hostname: &str, fqdn: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (shardmesh node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    match fqdn {
        Some(f) => s.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
        None => s.push_str(&format!("{ip}\t{hostname}\n")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits() {
        let scope = scope(Path::new("/var/lib/agent-a"));
        assert!(
            scope.starts_with("smpod-") && scope.ends_with('-'),
            "{scope}"
        );
        assert_ne!(scope, super::scope(Path::new("/var/lib/agent-b")));
        let sb = Sandbox::named(
            &scope,
            "0b6c1a2e-7d44-4c5e-9f21-3e1a2b3c4d5e",
            Ipv4Addr::new(10, 244, 0, 2),
        );
        assert!(sb.host_veth.len() <= 15, "{}", sb.host_veth);
        assert_eq!(sb.netns, format!("{scope}0b6c1a2e7d44"));
    }

    #[test]
    fn resolv_conf_has_the_search_path() {
        let text = resolv_conf(&Config::default(), "bank");
        assert_eq!(
            text,
            "nameserver 10.96.0.10\nsearch bank.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert!(hosts(
            Ipv4Addr::new(10, 244, 0, 7),
            "bank-0",
            Some("bank-0.bank.ns.svc.cluster.local")
        )
        .contains("10.244.0.7\tbank-0.bank.ns.svc.cluster.local\tbank-0"));
    }
}
