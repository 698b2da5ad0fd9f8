//! Scenarios 4 and 5: Kubernetes replaces the bank's pods under load.
//! - a rolling update: an annotation on the ShardedService's pod template
//!   (what `kubectl rollout restart` does to a Deployment) → the operator
//!   renders a new StatefulSet template → every pod replaced, one at a time;
//! - a drain: the node cordoned, bank pods evicted through the Eviction API
//!   (`kubectl drain`, then one by one), the PDB (maxUnavailable 1) refusing
//!   a second eviction while one pod is away; uncordoned, the StatefulSet
//!   puts each pod back on the node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardmesh_e2e::poll;

use crate::handoff::{check_traffic, GRACEFUL_MIN};
use crate::report::Row;
use crate::suite::{Suite, BANK, NODE, NS};

/// How often the rollout is sampled (each sample is one `kubectl get`).
const SAMPLE: Duration = Duration::from_millis(250);

/// Scenario 4: a template change rolls every pod, one at a time.
pub fn rolling_update(suite: &mut Suite) {
    let before: BTreeMap<String, String> =
        suite.bank().into_iter().map(|p| (p.name, p.uid)).collect();
    assert_eq!(before.len(), 3, "{before:?}");
    let series = suite.load("rollout", &[]);
    let started = Instant::now();
    let patch = format!(
        r#"{{"spec":{{"template":{{"metadata":{{"annotations":{{"e2e.shardmesh.io/rollout":"{}"}}}}}}}}}}"#,
        std::process::id()
    );
    suite.kube.must(&[
        "patch", "shsvc", "bank", "-n", NS, "--type", "merge", "-p", &patch,
    ]);
    // Sampled, not awaited: the fewest pods serving at once and the order
    // in which new pods appeared.
    let deadline = started + Duration::from_secs(300);
    let mut fewest = 3;
    let mut order: Vec<String> = Vec::new();
    let done = loop {
        let pods = suite.bank();
        let serving = pods.iter().filter(|p| p.serving()).count();
        fewest = fewest.min(serving);
        for p in &pods {
            if before.get(&p.name) != Some(&p.uid) && !order.contains(&p.name) {
                order.push(p.name.clone());
            }
        }
        let replaced = pods.len() == 3
            && pods
                .iter()
                .all(|p| p.serving() && before.get(&p.name) != Some(&p.uid));
        if replaced && rolled_out(suite) {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "rollout not done in 300 s: {pods:?}, new pods so far {order:?}"
        );
        std::thread::sleep(SAMPLE);
    };
    // Every key is served as soon as the last pod is Ready.
    let recovery = suite.served_again(Instant::now());
    let traffic = series.finish();
    println!(
        "rollout: every pod replaced in {:.1} s, in the order {order:?}; fewest pods Ready at once: {fewest}",
        done.as_secs_f64()
    );
    suite.check(fewest >= 2, || {
        format!("rollout: more than one pod down at once (fewest Ready: {fewest}, new pods in the order {order:?})")
    });
    check_traffic(suite, "rollout", &traffic, GRACEFUL_MIN);
    let mut row = Row::new("4. rolling update of the template", Some(&traffic));
    row.ready = Some(done);
    row.recovery = Some(recovery);
    row.note = format!(
        "replaced {order:?}, fewest Ready {fewest}/3; recovery: keys served after the last pod Ready"
    );
    suite.record(row);
}

/// The StatefulSet's controller reports the update finished.
fn rolled_out(suite: &Suite) -> bool {
    suite
        .kube
        .get(&["get", "statefulset", "-n", NS, "bank"])
        .is_some_and(|s| {
            let st = &s["status"];
            st["updateRevision"] == st["currentRevision"]
                && st["updatedReplicas"].as_u64() == Some(3)
                && st["readyReplicas"].as_u64() == Some(3)
        })
}

/// One eviction through the Eviction API (`kubectl create --raw`).
fn evict(suite: &Suite, pod: &str) -> Result<String, String> {
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"{NS}"}}}}"#
    );
    let url = format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction");
    suite
        .kube
        .stdin(&["create", "--raw", &url, "-f", "-"], &body)
}

/// The PDB's refusal, as the API server words it.
fn refused_by_pdb(err: &str) -> bool {
    err.contains("disruption budget")
}

/// Scenario 5: drain honouring the PDB, every bank pod evicted once.
pub fn drain(suite: &mut Suite) {
    let series = suite.load("drain", &[]);
    let started = Instant::now();
    let mut evicted: Vec<String> = Vec::new();
    let mut refusals = 0;
    let mut slowest = Duration::ZERO;
    for round in 0..3 {
        suite.kube.must(&["cordon", NODE]);
        let before: BTreeMap<String, String> =
            suite.bank().into_iter().map(|p| (p.name, p.uid)).collect();
        let t = Instant::now();
        if round == 0 {
            // kubectl drain itself: it evicts in parallel and retries what
            // the PDB refuses until its timeout.
            let out = suite.kube.run(&[
                "drain",
                NODE,
                "--pod-selector",
                BANK,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout",
                "8s",
            ]);
            let err = out.err().unwrap_or_default();
            suite.check(refused_by_pdb(&err), || {
                format!("drain of 3 pods (PDB maxUnavailable 1) was not refused by the PDB: {err}")
            });
            refusals += err.matches("disruption budget").count();
        } else {
            let next = before
                .keys()
                .find(|n| !evicted.contains(n))
                .cloned()
                .expect("a pod not evicted yet");
            evict(suite, &next).unwrap_or_else(|e| panic!("evicting {next}: {e}"));
        }
        let gone = poll(Duration::from_secs(60), || {
            let now = suite.bank();
            let out: Vec<String> = before
                .iter()
                .filter(|(n, uid)| {
                    !now.iter()
                        .any(|p| &p.name == *n && &p.uid == *uid && !p.deleting)
                })
                .map(|(n, _)| n.clone())
                .collect();
            (!out.is_empty()).then_some(out)
        })
        .expect("a pod evicted");
        suite.check(gone.len() == 1, || {
            format!("drain round {round}: evicted at once: {gone:?}")
        });
        // A second eviction while one pod is away: the PDB says no.
        let other = before
            .keys()
            .find(|n| !gone.contains(n))
            .cloned()
            .expect("another pod");
        let err = evict(suite, &other).err().unwrap_or_default();
        suite.check(refused_by_pdb(&err), || {
            format!("drain round {round}: a second eviction ({other}) was not refused by the PDB: {err}")
        });
        refusals += usize::from(refused_by_pdb(&err));
        suite.kube.must(&["uncordon", NODE]);
        slowest = slowest.max(suite.wait_bank(3, t));
        evicted.extend(gone);
    }
    let recovery = suite.served_again(Instant::now());
    let traffic = series.finish();
    println!(
        "drain: evicted {evicted:?} one at a time in {:.1} s; the PDB refused {refusals} evictions; each pod back Ready within {:.1} s",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
    let mut all = evicted.clone();
    all.sort();
    all.dedup();
    suite.check(all.len() == 3, || {
        format!("drain: not every bank pod evicted once: {evicted:?}")
    });
    check_traffic(suite, "drain", &traffic, GRACEFUL_MIN);
    let mut row = Row::new("5. drain via the Eviction API", Some(&traffic));
    row.ready = Some(slowest);
    row.recovery = Some(recovery);
    row.note = format!(
        "evicted {evicted:?}, PDB refused {refusals}; Ready: slowest pod back; recovery: keys served after"
    );
    suite.record(row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pdb_refusal_is_recognised() {
        let kubectl = "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget.";
        assert!(refused_by_pdb(kubectl));
        assert!(!refused_by_pdb(
            "Error from server (NotFound): pods \"bank-9\" not found"
        ));
    }
}
