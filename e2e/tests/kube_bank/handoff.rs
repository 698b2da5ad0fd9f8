//! Scenarios 2 and 3: shards move while the bank is under load.
//! - `kubectl scale shsvc/bank --replicas 5`, then 3: joins and graceful
//!   leaves hand shards off (release → acquire);
//! - `kubectl delete pod bank-1`: the node agent's graceful deletion
//!   (SIGTERM, grace period), the StatefulSet recreates the pod;
//! - a crash: every process of bank-2 SIGKILLed at once; the others re-own
//!   its shards, the agent restarts its containers and it rejoins.
//!
//! Each ends with the money check of every load segment; failures must
//! carry a mesh reason.

use std::time::{Duration, Instant};

use shardmesh_e2e::{poll, shards};

use crate::podns;
use crate::report::Row;
use crate::series::Traffic;
use crate::suite::{Suite, NS, SHARDS};

/// Least success rate while a pod terminates gracefully (scale-in, delete,
/// rollout, drain). The kubelet (and our agent) stops the app container
/// before its native sidecar; the app's preStop hook (`GET /drain`, rendered
/// by the operator) has the sidecar hand its shards off first, while the app
/// still serves. Measured with it: 100.000 % in every graceful scenario
/// (without it: 98.95–99.54 %, `no-owner` until the sidecar's grace ran out).
/// The floor leaves room for the odd request in flight through a pod's own
/// outbound listener as it closes.
pub const GRACEFUL_MIN: f64 = 0.999;

/// Longest time from a crash until every key is served again.
const CRASH_BOUND: Duration = Duration::from_secs(20);

/// Checks what every scenario under load must hold: the money check of
/// every segment, a success rate of at least `min`, and no failure without
/// a mesh reason. bank-load's output is printed when one fails.
pub fn check_traffic(suite: &mut Suite, name: &str, traffic: &Traffic, min: f64) {
    let before = suite.failures.len();
    suite.check(traffic.verified(), || format!("{name}: money check failed"));
    let unexplained = traffic.without_mesh_reason();
    suite.check(unexplained.is_empty(), || {
        format!("{name}: failures without a mesh reason {unexplained:?}")
    });
    let rate = traffic.success_rate();
    suite.check(rate >= min, || format!("{name}: success {rate:.4} < {min}"));
    if suite.failures.len() > before {
        println!("{}", traffic.output());
    }
}

/// What a fault of one pod (`victim`, its shards watched as group
/// `watched`) must hold: the money check, the victim's shards failing only
/// with a mesh reason, and the live owners' shards (group `others`)
/// succeeding >= 99.5 %. Returns the latter's rate.
pub fn check_fault_traffic(suite: &mut Suite, name: &str, victim: &str, traffic: &Traffic) -> f64 {
    check_traffic(suite, name, traffic, 0.0);
    let unexplained = traffic.unexplained("watched");
    suite.check(unexplained.is_empty(), || {
        format!("{name}: {victim}'s shards failed without a mesh reason: {unexplained:?}")
    });
    let others = traffic.group_rate("others").unwrap_or(0.0);
    suite.check(others >= 0.995, || {
        format!("{name}: live owners' shards {others:.4} < 0.995")
    });
    others
}

/// Scale to `replicas` under load: Ready pods, then every shard served
/// exactly once by the new set of owners.
fn scale(suite: &mut Suite, replicas: usize) {
    let name = format!("scale-{replicas}");
    let series = suite.load(&name, &[]);
    let started = Instant::now();
    suite.kube.must(&[
        "scale",
        "-n",
        NS,
        "shsvc/bank",
        "--replicas",
        &replicas.to_string(),
    ]);
    let ready = suite.wait_bank(replicas, started);
    let handed = poll(Duration::from_secs(90), || {
        let pods = suite.bank();
        let each = pods.iter().all(|p| !shards::served(&p.admin()).is_empty());
        (pods.len() == replicas && each && suite.shards_served(&pods) == SHARDS as usize)
            .then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("{name}: shards not spread over {replicas} pods within 90 s"));
    let traffic = series.finish();
    println!(
        "{name}: {} Ready after {:.1} s, shards handed off after {:.1} s",
        replicas,
        ready.as_secs_f64(),
        handed.as_secs_f64()
    );
    check_traffic(suite, &name, &traffic, GRACEFUL_MIN);
    let mut row = Row::new(
        &format!("2. kubectl scale --replicas {replicas}"),
        Some(&traffic),
    );
    row.ready = Some(ready);
    row.recovery = Some(handed);
    row.note = "recovery: shards spread over the new set".into();
    suite.record(row);
}

/// Scenario 2: 3 → 5 → 3.
pub fn scale_out_and_in(suite: &mut Suite) {
    scale(suite, 5);
    scale(suite, 3);
}

/// Scenario 3a: `kubectl delete pod bank-1` under load.
pub fn delete_pod(suite: &mut Suite) {
    let before = suite.bank_pod("bank-1");
    let series = suite.load("delete", &[]);
    let started = Instant::now();
    suite
        .kube
        .must(&["delete", "pod", "-n", NS, "bank-1", "--wait=false"]);
    let back = poll(Duration::from_secs(180), || {
        let p = suite.kube.pod(NS, "bank-1")?;
        (p.uid != before.uid && p.serving()).then(|| started.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "bank-1 not replaced and Ready within 180 s: {:?}",
            suite.bank()
        )
    });
    suite.wait_bank(3, started);
    let recovery = suite.served_again(started);
    let traffic = series.finish();
    check_traffic(suite, "delete", &traffic, GRACEFUL_MIN);
    let mut row = Row::new("3. kubectl delete pod bank-1", Some(&traffic));
    row.ready = Some(back);
    row.recovery = Some(recovery);
    row.note = "graceful; new pod (UID) Ready".into();
    suite.record(row);
}

/// Scenario 3b: SIGKILL of every process of bank-2 under load.
pub fn crash(suite: &mut Suite) {
    let victim = suite.bank_pod("bank-2");
    let ip = victim.ip.clone().expect("bank-2 has an IP");
    let watched = shards::served(&victim.admin());
    assert!(!watched.is_empty(), "bank-2 serves no shard");
    let watch = shards::watch_arg(SHARDS, &watched);
    let pids = podns::pids_of_ip(&ip);
    assert!(!pids.is_empty(), "no process holds {ip}");
    let series = suite.load("crash", &["--watch-shards", &watch]);
    let killed_at = Instant::now();
    podns::kill_all(&pids);
    let recovery = suite.served_again(killed_at);
    println!(
        "crash: {} processes of bank-2 killed; every key served again after {:.1} s",
        pids.len(),
        recovery.as_secs_f64()
    );
    // Failure detection (suspicion ~5 s at the 1 s probe interval) + the
    // dead-owner margin (2 s) + acquire, with room for 2 shared cores.
    suite.check(recovery <= CRASH_BOUND, || {
        format!("crash: keys served again after {recovery:?}, bound {CRASH_BOUND:?}")
    });
    let back = poll(Duration::from_secs(180), || {
        let p = suite.kube.pod(NS, "bank-2")?;
        (p.uid == victim.uid && p.restarts > victim.restarts && p.serving())
            .then(|| killed_at.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "bank-2 not restarted in place and Ready within 180 s: {:?}",
            suite.kube.pod(NS, "bank-2")
        )
    });
    let traffic = series.finish();
    let others = check_fault_traffic(suite, "crash", "bank-2", &traffic);
    let now = suite.bank_pod("bank-2");
    let mut row = Row::new("3. SIGKILL bank-2's processes", Some(&traffic));
    row.ready = Some(back);
    row.recovery = Some(recovery);
    row.note = format!(
        "{} processes killed; restarts {} → {}; live owners' shards {:.3} %, bank-2's {:.3} %",
        pids.len(),
        victim.restarts,
        now.restarts,
        others * 100.0,
        traffic.group_rate("watched").unwrap_or(1.0) * 100.0
    );
    suite.record(row);
}
