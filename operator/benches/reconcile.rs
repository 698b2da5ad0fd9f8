//! Reconciles N ShardedServices (default 1,000) against the in-memory API
//! server: the first pass from nothing, then a second pass over the
//! unchanged objects (a restarted operator lists and reconciles everything
//! again). Prints total time, API writes per pass, and peak RSS.
//!
//! Run: `cargo bench -p shardmesh-operator --bench reconcile [-- N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardmesh_operator::metrics::Metrics;
use shardmesh_operator::reconcile::{self, Context};
use shardmesh_operator::render::Settings;
use shardmesh_operator::testing::fake_api::FakeApi;
use shardmesh_operator::testing::fixtures::sharded_service;

const NAMESPACE: &str = "bench";
const SHSVC: &str = "shardmesh.io/v1alpha1/shardedservices";
/// Upper bound on one pass, so a regression fails instead of hanging.
const PASS_LIMIT: Duration = Duration::from_secs(300);

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ready_count(api: &FakeApi, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            api.get(SHSVC, NAMESPACE, &format!("svc-{i}"))
                .is_some_and(|s| {
                    s["status"]["conditions"][0]["reason"] == "AllReplicasReady"
                        && s["status"]["observedGeneration"] == 1
                })
        })
        .count()
}

/// Waits until no API call has arrived for `quiet`, or the pass limit.
async fn settle(api: &FakeApi, quiet: Duration, started: Instant) {
    let mut last = api.calls().len();
    loop {
        tokio::time::sleep(quiet).await;
        let now = api.calls().len();
        if now == last || started.elapsed() > PASS_LIMIT {
            return;
        }
        last = now;
    }
}

struct Pass {
    by_kind: std::collections::BTreeMap<String, usize>,
    seconds: f64,
    writes: usize,
    reads: usize,
    reconciles: u64,
}

async fn pass(api: &FakeApi, n: usize, wait_ready: bool) -> Pass {
    api.clear_calls();
    let metrics = Metrics::new().expect("metrics");
    let ctx = Arc::new(Context::new(
        api.client(),
        Settings::default(),
        metrics.clone(),
        None,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let controller = tokio::spawn(reconcile::run(ctx, None, async move {
        let _ = stopped.await;
    }));
    if wait_ready {
        while ready_count(api, n) < n {
            assert!(started.elapsed() < PASS_LIMIT, "first pass did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        while metrics.reconciliations.get() < n as u64 {
            assert!(started.elapsed() < PASS_LIMIT, "second pass did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    settle(api, Duration::from_millis(500), started).await;
    let _ = stop.send(());
    let _ = controller.await;
    let calls = api.calls();
    let writes = calls
        .iter()
        .filter(|c| c.method != http::Method::GET)
        .count();
    let mut by_kind = std::collections::BTreeMap::new();
    for c in calls.iter().filter(|c| c.method != http::Method::GET) {
        let parts: Vec<&str> = c.path.split('/').collect();
        let kind = match parts.iter().position(|p| *p == "namespaces") {
            Some(i) if parts.get(i + 4) == Some(&"status") => "status".to_string(),
            Some(i) => parts.get(i + 2).copied().unwrap_or("?").to_string(),
            None => "?".to_string(),
        };
        *by_kind.entry(format!("{} {kind}", c.method)).or_insert(0) += 1;
    }
    Pass {
        by_kind,
        seconds,
        writes,
        reads: calls.len() - writes,
        reconciles: metrics.reconciliations.get(),
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let api = FakeApi::new();
    api.simulate_ready_statefulsets(true);
    for i in 0..n {
        let mut svc =
            serde_json::to_value(sharded_service(NAMESPACE, &format!("svc-{i}"))).expect("json");
        if let Some(meta) = svc["metadata"].as_object_mut() {
            meta.retain(|k, _| k == "name" || k == "namespace");
        }
        api.put(SHSVC, svc);
    }
    let baseline = peak_rss_kib().unwrap_or(0);
    let first = pass(&api, n, true).await;
    let second = pass(&api, n, false).await;
    let peak = peak_rss_kib().unwrap_or(0);
    println!("| ShardedServices | {n} |");
    println!("| first pass: time to all Ready | {:.2} s |", first.seconds);
    println!(
        "| first pass: API writes (incl. status, events) | {} ({:.1} per service) |",
        first.writes,
        first.writes as f64 / n as f64
    );
    println!("| first pass: API reads | {} |", first.reads);
    let breakdown: Vec<String> = first
        .by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("| first pass: writes by kind | {} |", breakdown.join(", "));
    println!("| first pass: reconciles | {} |", first.reconciles);
    println!(
        "| second pass (restart, unchanged): time to reconcile all | {:.2} s |",
        second.seconds
    );
    println!("| second pass: API writes | {} |", second.writes);
    println!("| second pass: API reads | {} |", second.reads);
    println!("| second pass: reconciles | {} |", second.reconciles);
    println!(
        "| peak RSS (operator + in-memory API server) | {:.1} MiB |",
        peak as f64 / 1024.0
    );
    println!(
        "| RSS before the operator started (API objects only) | {:.1} MiB |",
        baseline as f64 / 1024.0
    );
    if second.writes != 0 {
        eprintln!("second pass wrote {} times; target is 0", second.writes);
        std::process::exit(1);
    }
}
