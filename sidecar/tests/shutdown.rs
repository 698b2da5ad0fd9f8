//! The real binary: SIGTERM stops accepting, lets in-flight requests finish,
//! then exits 0. Also checks that a bad config is refused with the field named.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_shardmesh-sidecar");

fn write_config(
    dir: &std::path::Path,
    app: std::net::SocketAddr,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("sidecar.yaml");
    std::fs::write(
        &path,
        format!(
            "pod: {{ name: bank-0, service: bank }}\n\
             app: {{ address: \"{app}\" }}\n\
             listeners: {{ outbound: \"127.0.0.1:0\", inbound: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\n\
             shutdownGraceMs: 5000\n\
             services:\n  - {{ name: bank, shards: 4 }}\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmesh-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the sidecar binary on `config`; returns it with its startup log
/// line (which names the bound addresses).
fn spawn_sidecar(config: &std::path::Path) -> (std::process::Child, serde_json::Value) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .env("SHARDMESH_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = loop {
        let line = lines
            .next()
            .expect("sidecar exited before starting")
            .unwrap();
        if line.contains("sidecar started") {
            break serde_json::from_str(&line).unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, started)
}

/// Sends SIGTERM, as the kubelet does.
fn sigterm(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

/// Waits (10 s at most) for the exit status.
async fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "sidecar did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let app = start_app("bank-0", |_| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        (StatusCode::OK, "finished".into())
    })
    .await;
    let dir = temp_dir("drain");
    let config = write_config(&dir, app.addr, "");
    let (mut child, started) = spawn_sidecar(&config);
    let inbound: std::net::SocketAddr = started["inbound"].as_str().unwrap().parse().unwrap();

    let in_flight = tokio::spawn(async move {
        send(
            inbound,
            "GET",
            "/slow",
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.hits.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "request never reached the app");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&child);
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, "finished");
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "{status:?}");
    assert!(
        tokio::net::TcpStream::connect(inbound).await.is_err(),
        "listener closed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The app's preStop hook (`GET /drain` on the admin port) hands the pod
/// out of service while the app still runs: not ready at once, the
/// listeners still open for the app's last calls, and only SIGTERM (sent
/// once the app exited) closes them.
#[tokio::test]
async fn drain_on_request_keeps_the_listeners_until_sigterm() {
    let app = start_app("bank-0", |_| async { (StatusCode::OK, "ok".into()) }).await;
    let dir = temp_dir("drain-request");
    let config = write_config(&dir, app.addr, "");
    let (mut child, started) = spawn_sidecar(&config);
    let addr =
        |key: &str| -> std::net::SocketAddr { started[key].as_str().unwrap().parse().unwrap() };
    let (inbound, admin) = (addr("inbound"), addr("admin"));
    wait_for("ready", Duration::from_secs(10), async || {
        send(admin, "GET", "/ready", &[], "").await.status == StatusCode::OK
    })
    .await;

    let drained = send(admin, "GET", "/drain", &[], "").await;
    assert_eq!(drained.status, StatusCode::OK, "{}", drained.body);
    assert_eq!(
        send(admin, "GET", "/ready", &[], "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Still serving: the app may finish its work through the mesh.
    let got = send(inbound, "GET", "/x", &[("x-shardmesh-service", "bank")], "").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert!(child.try_wait().unwrap().is_none(), "exited before SIGTERM");
    // A second drain answers at once.
    assert_eq!(
        send(admin, "GET", "/drain", &[], "").await.status,
        StatusCode::OK
    );

    sigterm(&child);
    let status = wait_exit(&mut child).await;
    assert!(status.success(), "{status:?}");
    assert!(
        tokio::net::TcpStream::connect(inbound).await.is_err(),
        "listener closed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let dir = temp_dir("badconfig");
    let config = write_config(
        &dir,
        "127.0.0.1:9".parse().unwrap(),
        "    resilience: { retries: { attempts: 0 } }\n",
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "  - { name: bank, shards: 4 }\n    resilience",
        "  - name: bank\n    shards: 4\n    resilience",
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services[0].resilience.retries.attempts"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
