//! Slow app: one replica starts answering in 2 s (the bank's debug delay).
//! Its callers' breaker for it opens, keyed requests to it fail fast with
//! `circuit-open` (or `overloaded`) instead of piling up, requests served by
//! the other replicas keep p99 < 50 ms, and the breaker closes after the
//! replica recovers. bank-load's money check passes at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardmesh_e2e::http::{self, Reply};
use shardmesh_e2e::{load, mesh, poll};

/// Request deadline of the service: a 2 s answer is a failure (504) for the mesh.
const SPEC: &str = "  resilience:\n    timeouts:\n      requestMs: 1000\n";

fn breaker(admin: &str, peer: &str) -> f64 {
    http::metric(
        &http::metrics(admin),
        "shardmesh_circuit_breaker_state",
        &[&format!("peer=\"{peer}\"")],
    )
}

fn set_delay(app: &str, ms: u64) {
    let r = http::request(
        app,
        "PUT",
        "/debug/delay-ms",
        &[("content-type", "application/json")],
        &format!("{{\"ms\": {ms}}}"),
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200, "set delay on {app}: {r:?}");
}

/// `threads` clients reading balances through `outbound` for `span`.
fn probe(outbound: &str, threads: usize, span: Duration) -> Vec<Reply> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let end = Instant::now() + span;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (outbound, out) = (outbound.to_string(), out.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while Instant::now() < end {
                    let path = format!("/accounts/probe-{}", i % 60);
                    let r = http::request(
                        &outbound,
                        "GET",
                        &path,
                        &[("x-shardmesh-service", "bank")],
                        "",
                        Duration::from_secs(5),
                    );
                    out.lock().unwrap().push(r);
                    i += threads;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

fn p99(mut ms: Vec<f64>) -> f64 {
    if ms.is_empty() {
        return 0.0;
    }
    ms.sort_by(f64::total_cmp);
    ms[(ms.len() * 99 / 100).min(ms.len() - 1)]
}

#[test]
fn slow_replica_trips_its_breaker_and_others_stay_fast() {
    let m = mesh::Mesh::up(
        "slow",
        &mesh::bank_manifest(3, "--debug-api", SPEC),
        104,
        &[],
    );
    m.wait_ready(Duration::from_secs(30));
    let out0 = m.pod_field("bank-0", "outbound");
    let out2 = m.pod_field("bank-2", "outbound");
    let admin0 = m.pod_field("bank-0", "admin");
    let app1 = m.pod_field("bank-1", "app");
    let run = load::Load::start(
        &m.dir,
        "slow",
        &[out0.clone(), out2],
        &[
            "--duration",
            "25",
            "--concurrency",
            "8",
            "--accounts",
            "100",
        ],
    );
    http::wait_traffic(&admin0, 500.0, Duration::from_secs(20));

    set_delay(&app1, 2000);
    let slowed = Instant::now();
    let opened = poll(Duration::from_secs(20), || {
        (breaker(&admin0, "bank-1") >= 2.0).then(|| slowed.elapsed())
    })
    .expect("bank-0's breaker for bank-1 opens");
    println!(
        "breaker for the slow replica open {:.2} s after it slowed",
        opened.as_secs_f64()
    );

    let replies = probe(&out0, 8, Duration::from_secs(4));
    let healthy: Vec<f64> = replies
        .iter()
        .filter(|r| r.status == 200 && r.header("x-shardmesh-served-by") != Some("bank-1"))
        .map(|r| r.took.as_secs_f64() * 1000.0)
        .collect();
    let fast_fail: Vec<f64> = replies
        .iter()
        .filter(|r| matches!(r.reason(), Some("circuit-open" | "overloaded")))
        .map(|r| r.took.as_secs_f64() * 1000.0)
        .collect();
    let slow = replies
        .iter()
        .filter(|r| r.took > Duration::from_millis(500))
        .count();
    println!(
        "while slow: {} requests; served by healthy replicas {} (p99 {:.1} ms); failed fast {} (p99 {:.1} ms); over 500 ms {}",
        replies.len(),
        healthy.len(),
        p99(healthy.clone()),
        fast_fail.len(),
        p99(fast_fail.clone()),
        slow
    );
    assert!(healthy.len() > 100, "too few healthy answers");
    assert!(p99(healthy) < 50.0, "healthy replicas slowed down");
    assert!(
        !fast_fail.is_empty(),
        "no fast failures for the slow replica's keys"
    );
    assert!(p99(fast_fail) < 100.0, "failures were not fast");
    assert!(
        slow * 50 <= replies.len(),
        "{slow} requests piled up behind the slow replica"
    );

    set_delay(&app1, 0);
    let recovered = Instant::now();
    let closed = poll(Duration::from_secs(90), || {
        // Traffic drives the half-open probe.
        probe(&out0, 2, Duration::from_millis(200));
        (breaker(&admin0, "bank-1") == 0.0).then(|| recovered.elapsed())
    })
    .expect("breaker closes after recovery");
    println!(
        "breaker closed {:.2} s after the replica recovered",
        closed.as_secs_f64()
    );

    let result = run.finish();
    println!("{}", result.output);
    assert!(result.verified(), "{}", result.output);
}
