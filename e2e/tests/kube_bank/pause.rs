//! Scenario 3c: the fault the independent chaos client found. Every process
//! of bank-1 (app and sidecar) is stopped (SIGSTOP) under load for 9 s,
//! longer than failure detection, then resumed (SIGCONT). Before the fix a
//! pod resumed this way kept serving its shards on the epochs it held
//! before the pause, its app refused every line, the callers' breakers
//! opened, and a third of the keys answered `circuit-open` until the pod
//! was restarted. Here, on Kubernetes, with mTLS and the kubelet's probes
//! (liveness: 3 × 10 s, so no restart comes to the rescue), the test asserts:
//! - the survivors declare bank-1 dead and serve every shard it served
//!   while it is stopped (failure detection, measured);
//! - after the resume bank-1 rejoins on its own: it serves a share of the
//!   shards again, every shard is served exactly once, and every key is
//!   served through the client pod, within detection + the dead-owner
//!   margin (2 s) + 4 s of the resume;
//! - bank-1 was neither restarted nor replaced;
//! - the money check holds; live owners' shards succeed >= 99.5 %; the
//!   paused pod's shards fail only with a mesh reason.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shardmesh_e2e::shards::DEAD_OWNER_MARGIN;
use shardmesh_e2e::{poll, shards};

use crate::handoff::check_fault_traffic;
use crate::podns;
use crate::report::Row;
use crate::suite::{Suite, SHARDS};

/// How long bank-1 stays stopped: the chaos client's figure.
const PAUSE: Duration = Duration::from_secs(9);
/// Slack on top of detection + margin for a rejoin: the resumed sidecar
/// learns its term is void, rejoins through gossip and acquires its share
/// again (two shared cores, mutual TLS).
const REJOIN_SLACK: Duration = Duration::from_secs(4);

/// Every shard the sidecars behind `admins` serve now.
fn union(admins: &[String]) -> BTreeSet<u32> {
    admins.iter().flat_map(|a| shards::served(a)).collect()
}

/// Scenario 3c: SIGSTOP of every process of bank-1 for 9 s, then SIGCONT.
pub fn pause(suite: &mut Suite) {
    let victim = suite.bank_pod("bank-1");
    let ip = victim.ip.clone().expect("bank-1 has an IP");
    let watched = shards::served(&victim.admin());
    assert!(!watched.is_empty(), "bank-1 serves no shard");
    let survivors = [
        suite.bank_pod("bank-0").admin(),
        suite.bank_pod("bank-2").admin(),
    ];
    let pids = podns::pids_of_ip(&ip);
    assert!(!pids.is_empty(), "no process holds {ip}");
    let series = suite.load(
        "pause",
        &["--watch-shards", &shards::watch_arg(SHARDS, &watched)],
    );
    let paused_at = Instant::now();
    podns::signal_all(&pids, "STOP");
    // Taken over: the survivors serve every shard bank-1 served. Watched
    // only while the pause lasts; the pause is 9 s whatever happens.
    let detection = poll(PAUSE, || {
        let served = union(&survivors);
        watched.is_subset(&served).then(|| paused_at.elapsed())
    });
    // The rest of the fault's length, not a wait for the system.
    if let Some(left) = PAUSE.checked_sub(paused_at.elapsed()) {
        std::thread::sleep(left);
    }
    let resumed = Instant::now();
    podns::signal_all(&pids, "CONT");
    let paused_for = resumed - paused_at;
    suite.check(detection.is_some(), || {
        format!("pause: the survivors did not take bank-1's shards {watched:?} over within the {PAUSE:?} pause")
    });
    let detection = detection.unwrap_or(PAUSE);
    // Rejoined: bank-1 serves a share again and the three cover every shard.
    let all = [victim.admin(), survivors[0].clone(), survivors[1].clone()];
    let rejoined = poll(Duration::from_secs(60), || {
        let own = shards::served(&all[0]);
        (!own.is_empty() && union(&all).len() == SHARDS as usize).then_some(())
    });
    suite.check(rejoined.is_some(), || {
        "pause: bank-1 did not serve a share of the shards again within 60 s of the resume".into()
    });
    suite.served_again(Instant::now());
    let recovery = resumed.elapsed();
    let bound = detection + DEAD_OWNER_MARGIN + REJOIN_SLACK;
    suite.check(recovery <= bound, || {
        format!(
            "pause: rejoined and every key served {:.2} s after the resume, bound {:.2} s \
             (detection {:.2} s + margin 2 s + 4 s)",
            recovery.as_secs_f64(),
            bound.as_secs_f64(),
            detection.as_secs_f64()
        )
    });
    let now = suite.bank_pod("bank-1");
    suite.check(
        now.uid == victim.uid && now.restarts == victim.restarts,
        || {
            format!(
                "pause: bank-1 recovered by a restart (restarts {} → {}) or replacement, not by rejoining",
                victim.restarts, now.restarts
            )
        },
    );
    let traffic = series.finish();
    let others = check_fault_traffic(suite, "pause", "bank-1", &traffic);
    println!(
        "pause: {} processes stopped {:.1} s; taken over after {:.1} s; rejoined and every key served {:.1} s after the resume",
        pids.len(),
        paused_for.as_secs_f64(),
        detection.as_secs_f64(),
        recovery.as_secs_f64()
    );
    let mut row = Row::new("3. SIGSTOP bank-1 9 s, SIGCONT", Some(&traffic));
    row.recovery = Some(recovery);
    row.note = format!(
        "taken over after {:.1} s; recovery: rejoined, all keys served (after the resume); restarts {}; live owners' shards {:.3} %, bank-1's {:.3} %",
        detection.as_secs_f64(),
        now.restarts,
        others * 100.0,
        traffic.group_rate("watched").unwrap_or(1.0) * 100.0
    );
    suite.record(row);
}
