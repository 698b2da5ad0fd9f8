//! A real Jaeger v2 (an OpenTelemetry Collector distribution) for the
//! tracing tests: the pinned binary `scripts/kube/build` puts beside the
//! control plane's, started on free loopback ports with a config this
//! module writes (OTLP/gRPC receiver → in-memory storage → query API), and
//! read back through Jaeger's HTTP query API (`/api/traces/<id>`).
//!
//! [`Jaeger::for_test`] returns why a test skips when the binary is absent;
//! under `SHARDMESH_KUBE_E2E=1` (stage `scripts/test.d/60-kube.sh`, which
//! builds it) an absent binary is a failure instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bins::{target_dir, workspace};

/// A running Jaeger, killed on drop.
pub struct Jaeger {
    child: Child,
    dir: PathBuf,
    otlp: String,
    query: String,
}

/// Startup attempts: the free ports are picked before Jaeger binds them,
/// so another process may take one in between.
const ATTEMPTS: u32 = 3;
/// How long Jaeger may take to answer on its query port.
const READY: Duration = Duration::from_secs(30);

impl Jaeger {
    /// A Jaeger for a test named `name`, or why the test skips.
    pub fn for_test(name: &str) -> Result<Self, String> {
        let bin = match binary() {
            Ok(bin) => bin,
            Err(why) if std::env::var(crate::kube::E2E_ENV).as_deref() == Ok("1") => {
                panic!(
                    "{why}, but {} is 1: stage 60-kube builds it",
                    crate::kube::E2E_ENV
                )
            }
            Err(why) => return Err(why),
        };
        let dir = target_dir()
            .join("e2e")
            .join(format!("jaeger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match Self::start(&bin, &dir, attempt) {
                Ok(j) => return Ok(j),
                Err(e) => last = e,
            }
        }
        panic!("jaeger did not start in {ATTEMPTS} attempts: {last}");
    }

    fn start(bin: &Path, dir: &Path, attempt: u32) -> Result<Self, String> {
        let [otlp, http, grpc] = free_ports()?;
        let config = dir.join("config.yaml");
        std::fs::write(&config, config_yaml(otlp, http, grpc))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log_path = dir.join(format!("jaeger-{attempt}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("run {}: {e}", bin.display()))?;
        let mut jaeger = Self {
            child,
            dir: dir.to_path_buf(),
            otlp: format!("127.0.0.1:{otlp}"),
            query: format!("127.0.0.1:{http}"),
        };
        let ready = crate::poll(READY, || {
            if let Ok(Some(status)) = jaeger.child.try_wait() {
                return Some(Err(format!("exited with {status}")));
            }
            let up = jaeger.get("/api/services").is_some_and(|r| r.status == 200)
                && std::net::TcpStream::connect(&jaeger.otlp).is_ok();
            up.then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => Ok(jaeger),
            Some(Err(why)) => Err(format!("{why}; log {}", log_path.display())),
            None => Err(format!(
                "no answer on {} within {READY:?}; log {}",
                jaeger.query,
                log_path.display()
            )),
        }
    }

    /// The OTLP/gRPC endpoint, `http://127.0.0.1:PORT` (the sidecars'
    /// `tracing.endpoint`).
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp)
    }

    /// The directory of the config and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trace `trace_id` (32 hex digits) as the query API returns it
    /// (`{"traceID", "spans", "processes"}`); `None` until Jaeger has it.
    pub fn trace(&self, trace_id: &str) -> Option<Value> {
        let reply = self.get(&format!("/api/traces/{trace_id}"))?;
        if reply.status != 200 {
            return None;
        }
        let mut v: Value = serde_json::from_str(&reply.body).ok()?;
        let trace = v["data"].as_array_mut()?.pop()?;
        Some(trace)
    }

    /// The traces of `service` found by the query API's search (up to 100).
    pub fn search(&self, service: &str) -> Vec<Value> {
        self.get(&format!(
            "/api/traces?service={service}&limit=100&lookback=1h"
        ))
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
        .and_then(|mut v| v["data"].as_array_mut().map(std::mem::take))
        .unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<crate::http::Reply> {
        let mut reply =
            crate::http::request(&self.query, "GET", path, &[], "", Duration::from_secs(5));
        if reply.status == 0 {
            return None;
        }
        // Jaeger (Go's net/http) sends larger answers chunked.
        if reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            reply.body = dechunk(&reply.body)?;
        }
        Some(reply)
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The payload of a chunked body (`SIZE\r\nDATA\r\n`... `0\r\n\r\n`);
/// `None` when malformed.
fn dechunk(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    loop {
        let (line, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The Jaeger binary of the kube cache (`scripts/kube/build --print`).
fn binary() -> Result<PathBuf, String> {
    let out = Command::new(workspace().join("scripts/kube/build"))
        .arg("--print")
        .output()
        .map_err(|e| format!("run scripts/kube/build --print: {e}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bin = PathBuf::from(dir).join("jaeger");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no Jaeger binary at {} (scripts/kube/build makes it)",
            bin.display()
        ))
    }
}

/// Three free loopback ports (bound, read and released).
fn free_ports() -> Result<[u16; 3], String> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bind a free port: {e}"))?;
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port()).unwrap_or(0);
    Ok([port(0), port(1), port(2)])
}

/// Jaeger's config: OTLP/gRPC in, in-memory storage, the query API on
/// loopback; its own telemetry off (no metrics port to collide on, no
/// spans of its own).
fn config_yaml(otlp: u16, http: u16, grpc: u16) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    traces:
      level: none
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    # On by default: the query service traces itself to localhost:4317.
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{http}
    grpc:
      endpoint: 127.0.0.1:{grpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_bodies() {
        assert_eq!(
            dechunk("4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(dechunk("5\r\nab"), None);
        assert_eq!(dechunk("zz\r\n"), None);
    }
}
