//! The agent's flags: where the API is, which Node it is, the pod network
//! it hands addresses from, and where it keeps pod state.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Everything the agent is told at start (all flags have defaults).
#[derive(Clone, Debug)]
pub struct Config {
    /// Kubeconfig of the agent's API identity; `None` means `KUBECONFIG` / in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The Node this agent registers and whose pods it runs.
    pub node_name: String,
    /// The pod network of this node (`10.244.0.0/24`).
    pub pod_cidr: String,
    /// The bridge in the node netns that every pod's veth joins.
    pub bridge: String,
    /// The bridge's address: every pod's default route.
    pub gateway: Ipv4Addr,
    /// The Node's InternalIP and every pod's `hostIP` (defaults to the gateway).
    pub node_ip: Ipv4Addr,
    /// The cluster DNS server written into each pod's `resolv.conf`.
    pub cluster_dns: Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The image table (YAML); `None` means the built-in one.
    pub images: Option<PathBuf>,
    /// Pod directories, volumes and container logs.
    pub state_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            node_name: "node-1".into(),
            pod_cidr: "10.244.0.0/24".into(),
            bridge: "smbr0".into(),
            gateway: Ipv4Addr::new(10, 244, 0, 1),
            node_ip: Ipv4Addr::new(10, 244, 0, 1),
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
            images: None,
            state_dir: crate::bins::target_dir().join("node-agent"),
        }
    }
}

/// The usage line printed for `--help` and on a bad flag.
pub const USAGE: &str = "usage: shardmesh-node-agent [--kubeconfig PATH] [--node-name node-1] \
[--pod-cidr 10.244.0.0/24] [--bridge smbr0] [--gateway 10.244.0.1] [--node-ip IP] \
[--cluster-dns 10.96.0.10] [--cluster-domain cluster.local] [--images TABLE.yaml] [--state-dir DIR]";

impl Config {
    /// Parses `--flag VALUE` pairs (also `--flag=VALUE`).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut cfg = Self::default();
        let mut node_ip = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.into());
            }
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
            };
            let ip = |v: &str| {
                v.parse::<Ipv4Addr>()
                    .map_err(|e| format!("{flag} {v}: {e}"))
            };
            match flag.as_str() {
                "--kubeconfig" => cfg.kubeconfig = Some(value.into()),
                "--node-name" => cfg.node_name = value,
                "--pod-cidr" => cfg.pod_cidr = value,
                "--bridge" => cfg.bridge = value,
                "--gateway" => cfg.gateway = ip(&value)?,
                "--node-ip" => node_ip = Some(ip(&value)?),
                "--cluster-dns" => cfg.cluster_dns = ip(&value)?,
                "--cluster-domain" => cfg.cluster_domain = value,
                "--images" => cfg.images = Some(value.into()),
                "--state-dir" => cfg.state_dir = value.into(),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        cfg.node_ip = node_ip.unwrap_or(cfg.gateway);
        crate::node::ipam::Ipam::new(&cfg.pod_cidr, cfg.gateway)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        Config::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_follow_the_gateway() {
        let cfg = parse(&["--gateway", "10.9.0.1", "--pod-cidr=10.9.0.0/24"]).unwrap();
        assert_eq!(cfg.node_ip, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(cfg.node_name, "node-1");
    }

    #[test]
    fn rejects_unknown_flags_and_bad_cidrs() {
        assert!(parse(&["--nope", "x"]).is_err());
        assert!(parse(&["--pod-cidr", "10.244.0.0/33"]).is_err());
        assert!(parse(&["--node-name"]).is_err());
    }
}
