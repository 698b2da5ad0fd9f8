//! Probe and lifecycle-hook actions: HTTP GET and TCP connect against the
//! pod's address, exec inside the container's namespaces (`nsenter` into its
//! network, mount and UTS namespaces with its environment and user).

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe or hook does.
#[derive(Clone, Debug)]
pub enum Action {
    /// `exec.command`.
    Exec(Vec<String>),
    /// `httpGet`.
    Http(HTTPGetAction),
    /// `tcpSocket`.
    Tcp(TCPSocketAction),
    /// `sleep.seconds` (hooks only).
    Sleep(i64),
    /// Something the agent cannot do (gRPC probes): always fails, saying so.
    Unsupported(String),
}

impl Action {
    /// The action of a probe.
    pub fn of_probe(p: &Probe) -> Self {
        if let Some(e) = &p.exec {
            Self::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(h) = &p.http_get {
            Self::Http(h.clone())
        } else if let Some(t) = &p.tcp_socket {
            Self::Tcp(t.clone())
        } else if p.grpc.is_some() {
            Self::Unsupported("gRPC probes are not supported by the node agent".into())
        } else {
            Self::Unsupported("probe without a handler".into())
        }
    }

    /// The action of a lifecycle hook.
    pub fn of_hook(h: &LifecycleHandler) -> Self {
        if let Some(e) = &h.exec {
            Self::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(g) = &h.http_get {
            Self::Http(g.clone())
        } else if let Some(t) = &h.tcp_socket {
            Self::Tcp(t.clone())
        } else if let Some(s) = &h.sleep {
            Self::Sleep(s.seconds)
        } else {
            Self::Unsupported("hook without a handler".into())
        }
    }
}

/// Where an action runs: the container's process and address.
#[derive(Clone, Debug)]
pub struct Target {
    /// The pod's address.
    pub ip: String,
    /// The container's PID (its namespaces), for exec.
    pub pid: u32,
    /// The container's environment, for exec.
    pub env: Vec<(String, String)>,
    /// `runAsUser`/`runAsGroup`, for exec.
    pub uid: Option<u32>,
    /// See `uid`.
    pub gid: Option<u32>,
}

/// Resolves a numbered or named container port.
fn port(container: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} out of range")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}"))
        }
    }
}

/// Runs `action` within `timeout`; `Err` carries the failure message.
pub async fn run(
    action: &Action,
    container: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_inner(action, container, target)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

async fn run_inner(action: &Action, container: &Container, target: &Target) -> Result<(), String> {
    match action {
        Action::Unsupported(why) => Err(why.clone()),
        Action::Sleep(s) => {
            tokio::time::sleep(Duration::from_secs((*s).max(0) as u64)).await;
            Ok(())
        }
        Action::Tcp(t) => {
            let host = t.host.clone().unwrap_or_else(|| target.ip.clone());
            let p = port(container, &t.port)?;
            TcpStream::connect((host.as_str(), p))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{p}: {e}"))
        }
        Action::Http(h) => {
            if h.scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
            {
                return Err("HTTPS probes are not supported by the node agent".into());
            }
            let host = h.host.clone().unwrap_or_else(|| target.ip.clone());
            let p = port(container, &h.port)?;
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let code = http_get(
                &host,
                p,
                &path,
                h.http_headers
                    .iter()
                    .flatten()
                    .map(|x| (x.name.as_str(), x.value.as_str())),
            )
            .await?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Action::Exec(argv) => {
            if argv.is_empty() {
                return Err("exec with an empty command".into());
            }
            let mut cmd = tokio::process::Command::new("nsenter");
            cmd.arg("--target")
                .arg(target.pid.to_string())
                .args(["--net", "--mount", "--uts", "--root", "--wd"]);
            if let Some(uid) = target.uid {
                cmd.arg(format!("--setuid={uid}"));
                cmd.arg(format!("--setgid={}", target.gid.unwrap_or(0)));
            }
            cmd.arg("--")
                .args(argv)
                .env_clear()
                .envs(target.env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let out = cmd.output().await.map_err(|e| format!("exec: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
                msg.push_str(&String::from_utf8_lossy(&out.stderr));
                msg.truncate(256);
                Err(format!(
                    "command {argv:?} exited with {}: {}",
                    out.status,
                    msg.trim()
                ))
            }
        }
    }
}

/// A minimal HTTP/1.1 GET: the status code.
async fn http_get<'a>(
    host: &str,
    port: u16,
    path: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<u16, String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_and_tcp_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for code in [200u16, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "a", "ports": [{"name": "admin", "containerPort": addr.port()}]
        }))
        .unwrap();
        let target = Target {
            ip: "127.0.0.1".into(),
            pid: 0,
            env: vec![],
            uid: None,
            gid: None,
        };
        let http = Action::Http(HTTPGetAction {
            port: IntOrString::String("admin".into()),
            path: Some("/ready".into()),
            ..Default::default()
        });
        let t = Duration::from_secs(2);
        assert_eq!(run(&http, &c, &target, t).await, Ok(()));
        let err = run(&http, &c, &target, t).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        let tcp = Action::Tcp(TCPSocketAction {
            port: IntOrString::String("nope".into()),
            ..Default::default()
        });
        assert!(run(&tcp, &c, &target, t)
            .await
            .unwrap_err()
            .contains("no container port"));
    }
}
