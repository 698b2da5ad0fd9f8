//! "Pods" made by hand, so the networking checks do not depend on the node
//! agent: a network namespace `smpod-kn-N` with `eth0` (veth) on the node
//! netns's bridge `smbr0`, an address from the top of node-1's pod CIDR
//! (10.244.0.200+, away from the agent's allocations), the default route
//! via 10.244.0.1, and optionally a tiny HTTP server answering
//! `GET /whoami` with the pod's name. The matching Pod object (bound to a
//! test Node, status written by the test) makes the real EndpointSlice
//! controller, kube-proxy and CoreDNS treat it like any pod.
//!
//! Commands in the pod run through `ip netns exec` and `unshare -m` with the
//! pod's own `/etc/resolv.conf` bind-mounted in a private mount namespace:
//! the machine's files are never touched.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The bridge and gateway of the node netns (scripts/kube/netns).
const BRIDGE: &str = "smbr0";
const GATEWAY: &str = "10.244.0.1";

/// One hand-made pod sandbox; dropping it stops its server and deletes the namespace.
pub struct Sandbox {
    /// Pod name (also what `/whoami` answers).
    pub name: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    netns: String,
    dir: PathBuf,
    server: Option<Child>,
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args)).map(|_| ())
}

impl Sandbox {
    /// Creates the namespace `smpod-kn-IDX` with 10.244.0.(200+IDX), whose
    /// resolver searches `NAMESPACE.svc.cluster.local` like a pod's.
    pub fn create(name: &str, namespace: &str, idx: u8) -> Result<Self, String> {
        assert!(idx < 50, "hand-made pods use 10.244.0.200-249");
        let netns = format!("smpod-kn-{idx}");
        let veth = format!("smkn{idx}");
        let ip_addr = Ipv4Addr::new(10, 244, 0, 200 + idx);
        let dir = std::env::temp_dir().join(format!("shardmesh-kn-{}-{idx}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("whoami"), name).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("resolv.conf"),
            format!(
                "nameserver 10.96.0.10\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:2\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let sandbox = Self {
            name: name.to_string(),
            ip: ip_addr,
            netns: netns.clone(),
            dir,
            server: None,
        };
        ip(&["netns", "add", &netns])?;
        // The test runs in the node netns: the host end lands there.
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["link", "set", &veth, "master", BRIDGE])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "route", "add", "default", "via", GATEWAY])?;
        Ok(sandbox)
    }

    /// Starts `python3 -m http.server` on `IP:port` serving `/whoami`, and
    /// waits until it accepts connections.
    pub fn serve(&mut self, port: u16) -> Result<(), String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "python3", "-m", "http.server"])
            .arg(port.to_string())
            .args(["--bind", &self.ip.to_string(), "--directory"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start http.server in {}: {e}", self.netns))?;
        self.server = Some(child);
        let addr = format!("{}:{port}", self.ip);
        shardmesh_e2e::poll(Duration::from_secs(20), || {
            let r = shardmesh_e2e::http::request(
                &addr,
                "GET",
                "/whoami",
                &[],
                "",
                Duration::from_secs(1),
            );
            (r.status == 200).then_some(())
        })
        .ok_or_else(|| format!("http.server in {} not answering on {addr}", self.netns))
    }

    /// Runs `sh -c SCRIPT` in the pod: its network namespace, its resolv.conf.
    pub fn sh(&self, script: &str) -> Output {
        let resolv = self.dir.join("resolv.conf");
        let wrapped = format!(
            "mount --bind '{}' /etc/resolv.conf && {script}",
            resolv.display()
        );
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &wrapped])
            .output()
            .unwrap_or_else(|e| panic!("run in {}: {e}", self.netns))
    }

    /// `curl` in the pod: the body, or the error.
    pub fn curl(&self, args: &str) -> Result<String, String> {
        let out = self.sh(&format!("curl -sS --max-time 5 {args}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
