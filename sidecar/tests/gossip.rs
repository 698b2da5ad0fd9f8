//! Gossip membership feeding routing, with real processes on loopback: a
//! cluster forms from one seed, a crashed member leaves the routing table
//! within the failure-detection time, a restarted one rejoins with a higher
//! incarnation, and a packet with a wrong key is counted and ignored.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::process::{keyring_file, temp_dir, SidecarProc};
use support::*;

fn config(dir: &Path, pod: &str, app: std::net::SocketAddr, keyring: &Path) -> std::path::PathBuf {
    support::process::gossip_config(dir, pod, app, keyring, 20, 1000)
}

async fn members(admin: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let got = send(admin, "GET", "/debug/members", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    doc["members"].as_array().cloned().unwrap_or_default()
}

fn health_of(members: &[serde_json::Value], pod: &str) -> Option<String> {
    members
        .iter()
        .find(|m| m["pod"] == pod)
        .and_then(|m| m["health"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_drops_a_crashed_member_and_takes_it_back() {
    let dir = temp_dir("gossip-cluster");
    let keyring = keyring_file(&dir, 7);
    let mut apps = Vec::new();
    for i in 0..4 {
        let name = format!("bank-{i}");
        apps.push(start_app(&name, |_| async { (StatusCode::OK, "ok".into()) }).await);
    }
    let seed = SidecarProc::spawn(&config(&dir, "bank-0", apps[0].addr, &keyring), &[]);
    let seeds = seed.gossip.expect("gossip address").to_string();
    let mut procs = vec![seed];
    for (i, app) in apps.iter().enumerate().skip(1) {
        let pod = format!("bank-{i}");
        procs.push(SidecarProc::spawn(
            &config(&dir, &pod, app.addr, &keyring),
            &[("SHARDMESH_SEEDS", seeds.clone())],
        ));
    }
    let admin0 = procs[0].admin;
    wait_for("4 alive members", Duration::from_secs(15), async || {
        let m = members(admin0).await;
        m.iter().filter(|m| m["health"] == "alive").count() == 4
    })
    .await;
    for p in &procs {
        let admin = p.admin;
        wait_for(
            "every member ready (shards acquired)",
            Duration::from_secs(15),
            async || send(admin, "GET", "/ready", &[], "").await.status == StatusCode::OK,
        )
        .await;
    }
    let incarnation_before = members(admin0)
        .await
        .iter()
        .find(|m| m["pod"] == "bank-3")
        .unwrap()["incarnation"]
        .as_u64()
        .unwrap();

    // Every key is served, and the same owner answers from every sidecar.
    for k in 0..20 {
        let path = format!("/accounts/k{k}");
        let a = send(
            procs[0].outbound,
            "GET",
            &path,
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        let b = send(
            procs[2].outbound,
            "GET",
            &path,
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            a.header("x-shardmesh-served-by"),
            b.header("x-shardmesh-served-by")
        );
    }

    // kill -9 one member: the others stop routing to it.
    procs[3].crash();
    let crashed_at = Instant::now();
    wait_for(
        "bank-3 declared dead",
        Duration::from_secs(15),
        async || {
            matches!(
                health_of(&members(admin0).await, "bank-3").as_deref(),
                Some("dead") | None
            )
        },
    )
    .await;
    eprintln!("bank-3 declared dead after {:?}", crashed_at.elapsed());
    for k in 0..20 {
        let got = send(
            procs[0].outbound,
            "GET",
            &format!("/accounts/k{k}"),
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_ne!(got.header("x-shardmesh-served-by"), Some("bank-3"));
    }

    // Restart it: it rejoins under a higher incarnation.
    procs[3] = SidecarProc::spawn(
        &config(&dir, "bank-3", apps[3].addr, &keyring),
        &[("SHARDMESH_SEEDS", seeds.clone())],
    );
    wait_for("bank-3 alive again", Duration::from_secs(15), async || {
        health_of(&members(admin0).await, "bank-3").as_deref() == Some("alive")
    })
    .await;
    let incarnation_after = members(admin0)
        .await
        .iter()
        .find(|m| m["pod"] == "bank-3")
        .unwrap()["incarnation"]
        .as_u64()
        .unwrap();
    assert!(
        incarnation_after > incarnation_before,
        "{incarnation_after} > {incarnation_before}"
    );

    // A packet sealed with another key is counted and ignored.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let garbage = [0x53u8; 200];
    socket
        .send_to(&garbage, procs[0].gossip.unwrap())
        .await
        .unwrap();
    wait_for("bad packet counted", Duration::from_secs(5), async || {
        let text = send(admin0, "GET", "/metrics", &[], "").await.body;
        metric_value(&text, "shardmesh_gossip_bad_packets_total") >= 1.0
    })
    .await;
    assert_eq!(
        health_of(&members(admin0).await, "bank-1").as_deref(),
        Some("alive")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gossip_without_a_keyring_is_refused() {
    let dir = temp_dir("gossip-nokey");
    let path = dir.join("c.yaml");
    std::fs::write(
        &path,
        "pod: { name: a, service: bank }\nservices: [{ name: bank, shards: 2 }]\nmembership: { gossip: { enabled: true } }\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::process::BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("membership.gossip.keyringFile"));
    let _ = std::fs::remove_dir_all(dir);
}
