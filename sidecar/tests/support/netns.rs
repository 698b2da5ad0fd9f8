//! Network namespaces for partition tests: member hosts joined through a
//! router namespace (all created and removed by the test), with nft rules in
//! the router to cut links. Needs root, `ip` and `nft`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Why netns tests cannot run here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY-free check of the effective user: `id -u` prints it.
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root to create network namespaces".into());
    }
    for tool in ["ip", "nft", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let probe = format!("smprobe{}", std::process::id() % 100_000);
    let ok = run_ok(&["ip", "netns", "add", &probe]);
    let _ = run_ok(&["ip", "netns", "del", &probe]);
    if !ok {
        return Some("cannot create network namespaces here".into());
    }
    None
}

fn run_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A router namespace and `n` member namespaces; member i has address
/// 10.231.i.2 and reaches the others through the router (10.231.i.1).
pub struct Lab {
    tag: String,
    pub router: String,
    pub members: Vec<String>,
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    /// Creates the namespaces and links.
    pub fn new(n: usize, dir: &Path) -> Self {
        let tag = format!("{}", std::process::id() % 100_000);
        let router = format!("smr{tag}");
        let mut lab = Self {
            tag: tag.clone(),
            router: router.clone(),
            members: Vec::new(),
            dir: dir.to_path_buf(),
            children: Vec::new(),
        };
        run(&["ip", "netns", "add", &router]);
        run(&["ip", "-n", &router, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        for i in 0..n {
            let ns = format!("smm{tag}x{i}");
            run(&["ip", "netns", "add", &ns]);
            lab.members.push(ns.clone());
            let (a, b) = (format!("sma{tag}{i}"), format!("smb{tag}{i}"));
            run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            run(&["ip", "link", "set", &a, "netns", &ns]);
            run(&["ip", "link", "set", &b, "netns", &router]);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", Self::addr(i)),
                "dev",
                &a,
            ]);
            run(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("10.231.{i}.1/24"),
                "dev",
                &b,
            ]);
            run(&["ip", "-n", &ns, "link", "set", &a, "up"]);
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", &router, "link", "set", &b, "up"]);
            run(&[
                "ip",
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("10.231.{i}.1"),
            ]);
        }
        lab
    }

    /// The address of member `i`.
    pub fn addr(i: usize) -> String {
        format!("10.231.{i}.2")
    }

    /// Starts `cmd` inside member `i`'s namespace; killed when the lab drops.
    pub fn spawn(&mut self, i: usize, cmd: &mut Command) -> &mut Child {
        let child = cmd.spawn().expect("spawn in namespace");
        self.children.push(child);
        let n = self.children.len();
        let _ = i;
        &mut self.children[n - 1]
    }

    /// A `Command` that runs `program` inside member `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.members[i], program]);
        c
    }

    /// Cuts every link between the `a` and `b` groups of members (both ways).
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let set = |g: &[usize]| {
            g.iter()
                .map(|i| format!("10.231.{i}.0/24"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = format!(
            "table inet smcut {{\n  chain cut {{\n    type filter hook forward priority 0; policy accept;\n    \
             ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n    ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n  }}\n}}\n",
            a = set(a),
            b = set(b)
        );
        let path = self.dir.join("cut.nft");
        std::fs::write(&path, rules).expect("write rules");
        run(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "-f",
            path.to_str().expect("path"),
        ]);
    }

    /// Removes the cut.
    pub fn heal(&self) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "nft",
            "delete",
            "table",
            "inet",
            "smcut",
        ]);
    }

    /// GET `url` from inside member `i` with `headers`: (status, body, served-by, error reason).
    pub fn get(&self, i: usize, url: &str, headers: &[(&str, &str)]) -> Fetched {
        let script = self.dir.join("fetch.py");
        if !script.exists() {
            std::fs::write(&script, FETCH_PY).expect("fetch script");
        }
        let mut cmd = self.command(i, "python3");
        cmd.arg(&script).arg(url);
        for (k, v) in headers {
            cmd.arg(format!("{k}={v}"));
        }
        let out = cmd.output().expect("fetch");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Fetched {
            status: v["status"].as_u64().unwrap_or(0) as u16,
            body: v["body"].as_str().unwrap_or_default().to_string(),
            served_by: v["served_by"].as_str().map(String::from),
            error: v["error"].as_str().map(String::from),
        }
    }

    /// Writes the small test app (200 for everything, callbacks included).
    pub fn app_script(&self) -> PathBuf {
        let path = self.dir.join("app.py");
        std::fs::write(&path, APP_PY).expect("app script");
        path
    }
}

/// One answer fetched from inside a namespace.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
    pub served_by: Option<String>,
    pub error: Option<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.members.iter().chain(std::iter::once(&self.router)) {
            let _ = run_ok(&["ip", "netns", "del", ns]);
        }
        let _ = &self.tag;
    }
}

const FETCH_PY: &str = r#"
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], headers=dict(a.split("=", 1) for a in sys.argv[2:]))
try:
    r = urllib.request.urlopen(req, timeout=5)
    status, headers, body = r.status, r.headers, r.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, e.headers, e.read()
except Exception as e:
    status, headers, body = 0, {}, str(e).encode()
print(json.dumps({"status": status, "body": body.decode("utf-8", "replace"),
                  "served_by": headers.get("x-shardmesh-served-by"),
                  "error": headers.get("x-shardmesh-error")}))
"#;

const APP_PY: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n: self.rfile.read(n)
        body = b"ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
