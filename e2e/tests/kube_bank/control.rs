//! Scenarios 6 and 7: the control plane side.
//! - the leading operator pod deleted while two replicas run: the other
//!   takes the Lease, and nothing else moves — no write by the operator to
//!   anything in the bank's namespace (audit log), no bank pod replaced or
//!   restarted, no failed request;
//! - `helm uninstall` (after the bank is deleted) leaves none of the
//!   chart's objects, the operator's Lease included (the chart renders it,
//!   and Helm deletes it after the RBAC, so a replica still stopping cannot
//!   re-create it); the mesh CA Secret the operator made in the release
//!   namespace and the bank's gossip-key Secret survive by design, and the
//!   test says which.

use std::time::{Duration, Instant};

use shardmesh_e2e::bins::workspace;
use shardmesh_e2e::poll;

use crate::install::lease_holder;
use crate::kubectl::Kube;
use crate::report::Row;
use crate::suite::{Suite, NS, OPERATOR, OPERATOR_NS, RELEASE};

/// Writes by `user` to objects in the bank's namespace (Events aside: they
/// record, they do not change the bank).
fn writes_in_bank(kube: &Kube, user: &str) -> Vec<String> {
    kube.cp
        .audit_events()
        .into_iter()
        .filter(|e| e.is_write() && e.user.username == user)
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.namespace.as_deref() == Some(NS) && o.resource != "events")
        })
        .map(|e| format!("{} {}", e.verb, e.request_uri))
        .collect()
}

/// Waits until `user` has not written in the bank's namespace for `quiet`
/// (status updates after the last scenario settle), within 90 s.
fn settle(kube: &Kube, user: &str, quiet: Duration) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = writes_in_bank(kube, user).len();
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "the operator kept writing for 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
        let now = writes_in_bank(kube, user).len();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// Scenario 6: the leader's pod deleted; another replica leads (the
/// standby, or the Deployment's replacement pod when it starts first: the
/// leaving leader releases the Lease, and whoever asks next takes it);
/// nothing moves.
pub fn operator_failover(suite: &mut Suite, user: &str) {
    let kube = &suite.kube;
    let ops = kube.pods(OPERATOR_NS, OPERATOR);
    assert_eq!(ops.iter().filter(|p| p.serving()).count(), 2, "{ops:?}");
    let leader = lease_holder(kube).expect("a leader");
    let standby = ops
        .iter()
        .find(|p| p.name != leader)
        .map(|p| p.name.clone())
        .expect("a standby");
    let writes = settle(kube, user, Duration::from_secs(5));
    let bank_before = suite.bank();
    let series = suite.load("operator", &[]);
    let kube = &suite.kube;
    let deleted = Instant::now();
    kube.must(&["delete", "pod", "-n", OPERATOR_NS, &leader, "--wait=false"]);
    let (took, successor) = poll(Duration::from_secs(45), || {
        let holder = lease_holder(kube)?;
        (holder != leader).then(|| (deleted.elapsed(), holder))
    })
    .unwrap_or_else(|| panic!("no replica took the Lease from {leader} within 45 s"));
    let who = if successor == standby {
        "the standby"
    } else {
        "the replacement pod"
    };
    println!(
        "operator: {leader} deleted, {successor} ({who}) leads after {:.1} s",
        took.as_secs_f64()
    );
    let (replaced, _) = kube
        .wait_serving(OPERATOR_NS, OPERATOR, 2, deleted, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("the operator Deployment: {e}"));
    // An observation window after the takeover: the new leader's first
    // reconciles find nothing to change.
    let window = Instant::now() + Duration::from_secs(10);
    while Instant::now() < window {
        std::thread::sleep(Duration::from_millis(500));
        let now = writes_in_bank(kube, user);
        assert_eq!(
            now.len(),
            writes,
            "the operator wrote in {NS} after the failover: {:?}",
            &now[writes..]
        );
    }
    let traffic = series.finish();
    let bank_after = suite.bank();
    suite.check(bank_before == bank_after, || {
        format!("bank pods moved during the operator failover: {bank_before:?} -> {bank_after:?}")
    });
    crate::handoff::check_traffic(suite, "operator failover", &traffic, 0.999);
    let mut row = Row::new("6. leading operator pod deleted", Some(&traffic));
    row.ready = Some(replaced);
    row.recovery = Some(took);
    row.note = format!("recovery: Lease taken by {who}; 0 writes in ns bank, bank pods untouched");
    suite.record(row);
}

/// Scenario 7: delete the bank, `helm uninstall`, and see what is left.
pub fn uninstall(suite: &mut Suite) {
    let kube = &suite.kube;
    crate::client::delete(kube, NS);
    let started = Instant::now();
    kube.must(&[
        "delete",
        "-n",
        NS,
        "-f",
        &workspace().join("examples/bank.yaml").display().to_string(),
        "--wait=true",
        "--timeout=120s",
    ]);
    let bank_gone = poll(Duration::from_secs(120), || {
        kube.pods(NS, crate::suite::BANK)
            .is_empty()
            .then(|| started.elapsed())
    })
    .expect("the bank's pods gone within 120 s");
    kube.helm(&["uninstall", RELEASE, "-n", OPERATOR_NS, "--timeout", "120s"])
        .unwrap_or_else(|e| panic!("{e}"));
    let label = format!("app.kubernetes.io/instance={RELEASE}");
    let left = poll(Duration::from_secs(120), || {
        let pods = names(kube, "pods", None);
        let chart = names(
            kube,
            "deployments,services,secrets,configmaps,serviceaccounts,poddisruptionbudgets,leases",
            Some(&label),
        );
        let services = names(kube, "services", None);
        (pods.is_empty() && chart.is_empty() && services.is_empty()).then_some(())
    });
    assert!(
        left.is_some(),
        "left behind in {OPERATOR_NS} after helm uninstall: {:?}",
        names(kube, "all,secrets,leases,configmaps", None)
    );
    let took = started.elapsed();
    // What survives, and why.
    let secrets = names(kube, "secrets", None);
    let leases = names(kube, "leases", None);
    println!("after helm uninstall, {OPERATOR_NS} still holds {secrets:?} {leases:?}: the CA made by the operator at run time, kept so a reinstall keeps the mesh's trust");
    assert!(
        secrets.iter().all(|s| s == "secret/shardmesh-ca"),
        "a Secret other than the operator's CA survived: {secrets:?}"
    );
    assert!(
        leases.is_empty(),
        "the operator's Lease is the chart's: uninstall must remove it, and no stopping replica re-create it: {leases:?}"
    );
    let gossip = kube.get(&["get", "secret", "-n", NS, "shardmesh-gossip-key"]);
    assert!(
        gossip.is_some(),
        "the gossip-key Secret must survive (created once, never overwritten, no owner)"
    );
    println!("the gossip-key Secret in {NS} survives by design: a reinstalled bank keeps its gossip keyring");
    let mut row = Row::new("7. helm uninstall", None);
    row.recovery = Some(took);
    row.note = format!(
        "bank gone after {:.1} s; nothing of the chart left, Lease included; kept: shardmesh-ca, {NS}/shardmesh-gossip-key",
        bank_gone.as_secs_f64()
    );
    suite.record(row);
}

/// `kubectl get KINDS -n shardmesh-system -o name`, optionally by label.
fn names(kube: &Kube, kinds: &str, label: Option<&str>) -> Vec<String> {
    let mut args = vec!["get", kinds, "-n", OPERATOR_NS, "-o", "name"];
    if let Some(l) = label {
        args.extend(["-l", l]);
    }
    let mut out: Vec<String> = kube
        .run(&args)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    out.sort();
    out
}
