//! Overload: 10× the configured concurrency at once. The mesh sheds the
//! excess at once (nothing piles up), the sidecars' memory stays bounded,
//! nothing crashes, and bank-load's money check passes afterwards.
//!
//! The calling sidecars do not count a peer's `overloaded` answer against
//! its breaker (nothing ran there), so no breaker opens during the burst:
//! every shed request is answered `overloaded`, never `circuit-open`, and
//! normal service is back within [`RECOVERY_TARGET`] after the burst.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use shardmesh_e2e::http::{self, Reply};
use shardmesh_e2e::{load, mesh, poll};

/// Concurrency limit in front of each app; the burst is 10× this.
const LIMIT: usize = 10;
/// The target for normal service after the burst.
const RECOVERY_TARGET: Duration = Duration::from_secs(1);
/// Keys of the normal-service check, sent at once (at most ~LIMIT per pod
/// plus a few queued, so the check itself is not shed).
const CHECK_KEYS: usize = 30;
/// Bursts sent.
const ROUNDS: usize = 10;
const SPEC: &str = "  resilience:\n    backpressure:\n      maxConcurrency: 10\n      queueSize: 10\n      maxQueueWaitMs: 200\n";

fn set_delay(app: &str, ms: u64) {
    let r = http::request(
        app,
        "PUT",
        "/debug/delay-ms",
        &[],
        &format!("{{\"ms\": {ms}}}"),
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200, "set delay on {app}: {r:?}");
}

fn get(outbound: &str, key: usize) -> Reply {
    http::request(
        outbound,
        "GET",
        &format!("/accounts/burst-{key}"),
        &[("x-shardmesh-service", "bank")],
        "",
        Duration::from_secs(15),
    )
}

#[test]
fn ten_times_the_concurrency_is_shed_at_once_and_recovers_within_a_second() {
    let m = mesh::Mesh::up(
        "overload",
        &mesh::bank_manifest(3, "--debug-api", SPEC),
        105,
        &[],
    );
    m.wait_ready(Duration::from_secs(30));
    let out0 = m.pod_field("bank-0", "outbound");
    let pods = ["bank-0", "bank-1", "bank-2"];
    // Every request holds an app slot for 100 ms, so the limit is reached.
    for p in pods {
        set_delay(&m.pod_field(p, "app"), 100);
    }
    let sidecars: Vec<u32> = pods.iter().map(|p| m.pid(p, "sidecar").unwrap()).collect();
    let rss_before: Vec<u64> = sidecars.iter().map(|p| mesh::rss_kib(*p)).collect();

    // Rounds of 10x LIMIT requests released at once (one connection each;
    // a bounded number, so the client's ephemeral ports never run out).
    let replies = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        let gate = Arc::new(Barrier::new(10 * LIMIT));
        let clients: Vec<_> = (0..10 * LIMIT)
            .map(|t| {
                let (out, replies, gate) = (out0.clone(), replies.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    let r = get(&out, round * 10 * LIMIT + t);
                    replies.lock().unwrap().push(r);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
    let burst_end = Instant::now();
    let replies = Arc::try_unwrap(replies).unwrap().into_inner().unwrap();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let mut shed: Vec<f64> = replies
        .iter()
        .filter(|r| r.reason() == Some("overloaded"))
        .map(|r| r.took.as_secs_f64() * 1000.0)
        .collect();
    shed.sort_by(f64::total_cmp);
    let other = replies.len() - ok - shed.len();
    let mut kinds = std::collections::BTreeMap::new();
    for r in &replies {
        *kinds
            .entry(format!("{} {}", r.status, r.reason().unwrap_or("")))
            .or_insert(0) += 1;
    }
    println!("answers: {kinds:?}");
    let p99 = shed.get(shed.len() * 99 / 100).copied().unwrap_or(0.0);
    println!(
        "burst of {} clients: {} requests, {ok} ok, {} overloaded (p50 {:.1} ms, p99 {p99:.1} ms), {other} other",
        10 * LIMIT,
        replies.len(),
        shed.len(),
        shed.get(shed.len() / 2).copied().unwrap_or(0.0)
    );
    assert!(ok > 0, "nothing served during the burst");
    assert!(!shed.is_empty(), "nothing shed as overloaded");
    assert!(p99 < 1500.0, "overloaded answers were not prompt");
    assert!(
        other * 100 <= replies.len(),
        "{other} answers neither ok nor overloaded"
    );

    assert!(
        !replies.iter().any(|r| r.reason() == Some("circuit-open")),
        "a breaker opened on shed requests"
    );

    // Normal = every key answers 200 again, all of them sent at once (the
    // app still takes 100 ms per request; one key at a time would measure
    // 30 x 100 ms instead of the recovery).
    let normal = poll(Duration::from_secs(30), || {
        let checks: Vec<_> = (0..CHECK_KEYS)
            .map(|k| {
                let out = out0.clone();
                std::thread::spawn(move || get(&out, k).status)
            })
            .collect();
        let all_ok = checks.into_iter().all(|c| c.join().unwrap() == 200);
        all_ok.then(|| burst_end.elapsed())
    })
    .expect("normal service after the burst");
    println!(
        "normal service ({CHECK_KEYS} keys at once, all 200) {:.0} ms after the burst",
        normal.as_secs_f64() * 1000.0
    );

    let rss_after: Vec<u64> = sidecars.iter().map(|p| mesh::rss_kib(*p)).collect();
    println!("sidecar RSS KiB before {rss_before:?} after {rss_after:?}");
    for (b, a) in rss_before.iter().zip(&rss_after) {
        assert!(
            *a < b + 64 * 1024,
            "sidecar memory grew from {b} to {a} KiB"
        );
    }
    for (p, pid) in pods.iter().zip(&sidecars) {
        assert_eq!(m.pid(p, "sidecar"), Some(*pid), "{p}'s sidecar restarted");
        assert!(mesh::alive(*pid), "{p}'s sidecar died");
    }

    for p in pods {
        set_delay(&m.pod_field(p, "app"), 0);
    }
    let targets: Vec<String> = pods.iter().map(|p| m.pod_field(p, "outbound")).collect();
    let result = load::run(
        &m.dir,
        "overload",
        &targets,
        &["--duration", "4", "--concurrency", "8"],
    );
    println!("{}", result.output);
    assert!(result.verified(), "{}", result.output);
    assert!(
        normal <= RECOVERY_TARGET,
        "normal service only {normal:?} after the burst, target {RECOVERY_TARGET:?}"
    );
}
