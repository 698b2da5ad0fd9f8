//! Shard ownership through real sidecar processes with gossip: scale
//! 3 → 4 → 3 under steady keyed writes loses no request, never serves a
//! shard from two owners, grows epochs, and never serves a shard before its
//! acquire returned; a crashed owner's shards are acquired elsewhere.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::process::{keyring_file, temp_dir, SidecarProc};
use support::*;

/// What a recording app saw, in the order it saw it.
#[derive(Clone, Debug)]
enum Seen {
    /// Acquire callback returned (the app holds the shard from now on).
    Acquired {
        pod: String,
        shard: u32,
        epoch: u64,
        at: Instant,
    },
    /// Release callback arrived (the app stops holding it now).
    Released {
        pod: String,
        shard: u32,
        epoch: u64,
        at: Instant,
    },
    /// A keyed request served.
    Served {
        pod: String,
        shard: u32,
        epoch: u64,
        at: Instant,
    },
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn recording_app(pod: &str, log: Log) -> TestApp {
    let name = pod.to_string();
    start_app(pod, move |req| {
        let log = log.clone();
        let pod = name.clone();
        async move {
            let path = req.uri().path().to_string();
            let at = Instant::now();
            if let Some(rest) = path.strip_prefix("/shardmesh/shards/") {
                let body: serde_json::Value =
                    serde_json::from_slice(req.body()).unwrap_or_default();
                let shard = body["shard"].as_u64().unwrap_or(u64::MAX) as u32;
                let epoch = body["epoch"].as_u64().unwrap_or(0);
                let seen = if rest.ends_with("/acquire") {
                    Seen::Acquired {
                        pod,
                        shard,
                        epoch,
                        at,
                    }
                } else {
                    Seen::Released {
                        pod,
                        shard,
                        epoch,
                        at,
                    }
                };
                log.lock().unwrap().push(seen);
                return (StatusCode::OK, "{}".into());
            }
            let header = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            match (header("x-shardmesh-shard"), header("x-shardmesh-epoch")) {
                (Some(shard), Some(epoch)) => {
                    log.lock().unwrap().push(Seen::Served {
                        pod,
                        shard: shard as u32,
                        epoch,
                        at,
                    });
                    (StatusCode::OK, "ok".into())
                }
                _ => (StatusCode::BAD_REQUEST, "no shard headers".into()),
            }
        }
    })
    .await
}

fn config(dir: &Path, pod: &str, app: std::net::SocketAddr, keyring: &Path) -> std::path::PathBuf {
    support::process::gossip_config(dir, pod, app, keyring, 12, 10000)
}

async fn ready(admin: std::net::SocketAddr) -> bool {
    send(admin, "GET", "/ready", &[], "").await.status == StatusCode::OK
}

async fn owners(admin: std::net::SocketAddr) -> BTreeMap<u64, String> {
    let got = send(admin, "GET", "/debug/shards", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&got.body).unwrap_or_default();
    doc["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "serving")
        .filter_map(|s| Some((s["shard"].as_u64()?, doc["local"].as_str()?.to_string())))
        .collect()
}

async fn serving_everywhere(procs: &[&SidecarProc]) -> BTreeMap<u64, Vec<String>> {
    let mut all: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for p in procs {
        for (shard, pod) in owners(p.admin).await {
            all.entry(shard).or_default().push(pod);
        }
    }
    all
}

/// Checks the recorded history: every served request fell inside its pod's
/// acquire..release window for that shard and epoch, and epochs of a shard
/// grow with every acquire.
fn check_history(log: &[Seen]) {
    let mut windows: HashMap<(String, u32, u64), (Instant, Option<Instant>)> = HashMap::new();
    let mut last_epoch: HashMap<u32, u64> = HashMap::new();
    for seen in log {
        match seen {
            Seen::Acquired {
                pod,
                shard,
                epoch,
                at,
            } => {
                let prev = last_epoch.insert(*shard, *epoch).unwrap_or(0);
                assert!(*epoch > prev, "shard {shard}: epoch {epoch} after {prev}");
                windows.insert((pod.clone(), *shard, *epoch), (*at, None));
            }
            Seen::Released {
                pod,
                shard,
                epoch,
                at,
            } => {
                if let Some(w) = windows.get_mut(&(pod.clone(), *shard, *epoch)) {
                    w.1 = Some(*at);
                }
            }
            Seen::Served {
                pod,
                shard,
                epoch,
                at,
            } => {
                let w = windows
                    .get(&(pod.clone(), *shard, *epoch))
                    .unwrap_or_else(|| {
                        panic!("{pod} served shard {shard} epoch {epoch} before acquiring it")
                    });
                assert!(
                    *at >= w.0 && w.1.is_none_or(|r| *at <= r),
                    "{pod} served shard {shard} outside its ownership"
                );
                assert_eq!(
                    last_epoch.get(shard),
                    Some(epoch),
                    "{pod} served shard {shard} with a stale epoch {epoch}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_and_in_under_load_loses_nothing() {
    let dir = temp_dir("sharding-scale");
    let keyring = keyring_file(&dir, 9);
    let log: Log = Arc::default();
    let mut apps = Vec::new();
    for i in 0..4 {
        apps.push(recording_app(&format!("bank-{i}"), log.clone()).await);
    }
    let p0 = SidecarProc::spawn(&config(&dir, "bank-0", apps[0].addr, &keyring), &[]);
    let seeds = vec![("SHARDMESH_SEEDS", p0.gossip.unwrap().to_string())];
    let p1 = SidecarProc::spawn(&config(&dir, "bank-1", apps[1].addr, &keyring), &seeds);
    let p2 = SidecarProc::spawn(&config(&dir, "bank-2", apps[2].addr, &keyring), &seeds);
    wait_for(
        "3 ready members owning all shards",
        Duration::from_secs(20),
        async || {
            ready(p0.admin).await
                && ready(p1.admin).await
                && ready(p2.admin).await
                && serving_everywhere(&[&p0, &p1, &p2]).await.len() == 12
        },
    )
    .await;

    // Steady keyed writes through bank-0's outbound sidecar.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outbound = p0.outbound;
    let mut load = Vec::new();
    for w in 0..4 {
        let stop = stop.clone();
        let sent = sent.clone();
        load.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && i < 20_000 {
                let got = send(
                    outbound,
                    "POST",
                    &format!("/accounts/a{w}-{}", i % 50),
                    &[
                        ("x-shardmesh-service", "bank"),
                        ("x-shardmesh-idempotent", "true"),
                    ],
                    "{}",
                )
                .await;
                results.push((got.status, got.body));
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            results
        }));
    }

    // Traffic flows before, between and after the membership changes.
    let more_traffic = async |n: usize| {
        let target = sent.load(Ordering::SeqCst) + n;
        wait_for("traffic", Duration::from_secs(30), async || {
            sent.load(Ordering::SeqCst) >= target
        })
        .await;
    };
    more_traffic(300).await;

    // Scale out to 4.
    let p3 = SidecarProc::spawn(&config(&dir, "bank-3", apps[3].addr, &keyring), &seeds);
    wait_for(
        "bank-3 ready with shards",
        Duration::from_secs(30),
        async || ready(p3.admin).await && !owners(p3.admin).await.is_empty(),
    )
    .await;
    wait_for(
        "one owner per shard across 4",
        Duration::from_secs(30),
        async || {
            let all = serving_everywhere(&[&p0, &p1, &p2, &p3]).await;
            all.len() == 12 && all.values().all(|o| o.len() == 1)
        },
    )
    .await;

    more_traffic(300).await;

    // Scale in to 3: graceful stop of bank-3 hands its shards back.
    let mut p3 = p3;
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &p3.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while p3.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bank-3 did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(
        "one owner per shard across 3",
        Duration::from_secs(30),
        async || {
            let all = serving_everywhere(&[&p0, &p1, &p2]).await;
            all.len() == 12 && all.values().all(|o| o.len() == 1)
        },
    )
    .await;

    more_traffic(300).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for l in load {
        for (status, body) in l.await.unwrap() {
            total += 1;
            assert_eq!(
                status,
                StatusCode::OK,
                "a request failed during scaling: {body}"
            );
        }
    }
    assert!(total >= 900, "too little traffic to mean anything: {total}");
    let log = log.lock().unwrap();
    let by_new = |f: fn(&Seen) -> bool| log.iter().filter(|s| f(s)).count();
    assert!(
        by_new(|s| matches!(s, Seen::Acquired { pod, .. } if pod == "bank-3")) > 0,
        "scale-out moved shards"
    );
    assert!(
        by_new(|s| matches!(s, Seen::Released { pod, .. } if pod == "bank-3")) > 0,
        "scale-in released them"
    );
    assert!(
        by_new(|s| matches!(s, Seen::Served { pod, .. } if pod == "bank-3")) > 0,
        "bank-3 served traffic"
    );
    check_history(&log);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_owner_shards_are_acquired_elsewhere() {
    let dir = temp_dir("sharding-crash");
    let keyring = keyring_file(&dir, 11);
    let log: Log = Arc::default();
    let mut apps = Vec::new();
    for i in 0..3 {
        apps.push(recording_app(&format!("bank-{i}"), log.clone()).await);
    }
    let p0 = SidecarProc::spawn(&config(&dir, "bank-0", apps[0].addr, &keyring), &[]);
    let seeds = vec![("SHARDMESH_SEEDS", p0.gossip.unwrap().to_string())];
    let p1 = SidecarProc::spawn(&config(&dir, "bank-1", apps[1].addr, &keyring), &seeds);
    let mut p2 = SidecarProc::spawn(&config(&dir, "bank-2", apps[2].addr, &keyring), &seeds);
    // bank-2 joins last: the two others may serve all 12 before it has
    // taken its share, so wait for that share too.
    wait_for(
        "3 members serving all shards, bank-2 some of them",
        Duration::from_secs(20),
        async || {
            serving_everywhere(&[&p0, &p1, &p2]).await.len() == 12
                && !owners(p2.admin).await.is_empty()
        },
    )
    .await;
    let lost: Vec<u64> = owners(p2.admin).await.into_keys().collect();
    assert!(!lost.is_empty());
    p2.crash();
    let crashed = Instant::now();
    wait_for(
        "survivors serve every shard",
        Duration::from_secs(20),
        async || serving_everywhere(&[&p0, &p1]).await.len() == 12,
    )
    .await;
    eprintln!(
        "shards of the crashed member served again after {:?}",
        crashed.elapsed()
    );
    for k in 0..30 {
        let got = send(
            p1.outbound,
            "POST",
            &format!("/accounts/k{k}"),
            &[("x-shardmesh-service", "bank")],
            "{}",
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    }
    check_history(&log.lock().unwrap());
    let _ = std::fs::remove_dir_all(dir);
}
