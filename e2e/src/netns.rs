//! Network namespaces for the fault scenarios (root only): one namespace per
//! pod, `PREFIX-0-i` with `10.B.0.(10+i)/16`, joined by veth to a bridge in a
//! hub namespace. Private addresses exist only inside these namespaces;
//! dropping a [`Netns`] deletes them all.

use std::process::{Command, Output};

/// The namespaces of one scenario.
pub struct Netns {
    /// Namespace name prefix (`local up --netns PREFIX`).
    pub prefix: String,
    /// Second octet of the pod addresses.
    pub block: u8,
    /// Pods.
    pub pods: u32,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Netns {
    /// Why these scenarios cannot run here, if they cannot.
    pub fn unavailable() -> Option<String> {
        if !crate::is_root() {
            return Some("needs root to create network namespaces".into());
        }
        for tool in ["ip", "nft", "curl"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Some(format!("needs {tool}"));
            }
        }
        let probe = format!("smeprobe{}", std::process::id());
        if ip(&["netns", "add", &probe]).is_err() {
            return Some("cannot create network namespaces here".into());
        }
        let _ = ip(&["netns", "del", &probe]);
        None
    }

    /// Creates the hub and `pods` pod namespaces.
    pub fn create(prefix: &str, block: u8, pods: u32) -> Result<Self, String> {
        let me = Self {
            prefix: prefix.to_string(),
            block,
            pods,
        };
        let hub = me.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..pods {
            let ns = me.pod(i);
            let (a, b) = (format!("{prefix}a{i}"), format!("{prefix}b{i}"));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &ns])?;
            ip(&["link", "set", &b, "netns", &hub])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/16", me.ip(i)),
                "dev",
                &a,
            ])?;
            ip(&["-n", &ns, "link", "set", &a, "up"])?;
            ip(&["-n", &hub, "link", "set", &b, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &b, "up"])?;
        }
        Ok(me)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Namespace of pod `i` (service 0).
    pub fn pod(&self, i: u32) -> String {
        format!("{}-0-{i}", self.prefix)
    }

    /// Address of pod `i`.
    pub fn ip(&self, i: u32) -> String {
        format!("10.{}.0.{}", self.block, 10 + i)
    }

    /// Runs `argv` inside pod `i`'s namespace.
    pub fn exec(&self, i: u32, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.pod(i)])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    /// Loads an nft ruleset into pod `i`'s namespace.
    pub fn nft(&self, i: u32, rules: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.pod(i), "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("write nft rules");
        assert!(child.wait().expect("nft").success(), "nft rules: {rules}");
    }

    /// `curl` from pod `i`'s namespace: `(status line + headers, body)`.
    pub fn curl(&self, i: u32, url: &str, headers: &[&str]) -> (String, String) {
        let mut argv = vec!["curl", "-s", "-m", "3", "-D", "-"];
        for h in headers {
            argv.extend(["-H", h]);
        }
        argv.push(url);
        let out = self.exec(i, &argv);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match text.split_once("\r\n\r\n") {
            Some((h, b)) => (h.to_ascii_lowercase(), b.to_string()),
            None => (String::new(), text),
        }
    }

    /// `/debug/<what>` of pod `i`'s sidecar, as JSON.
    pub fn debug(&self, i: u32, what: &str) -> Option<serde_json::Value> {
        let url = format!("http://{}:7402/debug/{what}", self.ip(i));
        serde_json::from_str(&self.curl(i, &url, &[]).1).ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 0..self.pods {
            let _ = ip(&["netns", "del", &self.pod(i)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}
