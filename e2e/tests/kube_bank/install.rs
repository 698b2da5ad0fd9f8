//! Scenario 1, the user story: `helm install` with mTLS on → the operator
//! runs as two pods and becomes Ready → `kubectl apply` of the bank (with
//! the harness's PersistentVolume for its shared claim) → three bank pods
//! Ready, every shard served, traffic through a pod's outbound listener.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use shardmesh_e2e::bins::workspace;
use shardmesh_e2e::{http, poll};

use crate::kubectl::Kube;
use crate::report::Row;
use crate::suite::{Suite, BANK, NS, OPERATOR, OPERATOR_NS, RELEASE};

/// The hostPath-backed PersistentVolume the harness serves the bank's
/// `ReadWriteMany` claim from (users bring their own storage class).
const HARNESS_PV: &str = "e2e/fixtures/bank-data-pv.yaml";

/// Installs the chart; the time until both operator replicas are Ready.
pub fn operator(kube: &Kube) -> Duration {
    let chart = workspace().join("charts/shardmesh");
    let started = Instant::now();
    kube.helm(&[
        "install",
        RELEASE,
        &chart.display().to_string(),
        "-n",
        OPERATOR_NS,
        "--create-namespace",
        "--set",
        "identity.enabled=true",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let (ready, pods) = kube
        .wait_serving(OPERATOR_NS, OPERATOR, 2, started, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("the operator pods: {e}"));
    let holder = poll(Duration::from_secs(60), || lease_holder(kube))
        .expect("an operator replica takes the Lease within 60 s");
    assert!(
        pods.iter().any(|p| p.name == holder),
        "the Lease is held by {holder}, not by an operator pod: {pods:?}"
    );
    println!(
        "operator: 2 pods Ready {:.1} s after helm install; {holder} leads",
        ready.as_secs_f64()
    );
    ready
}

/// Who holds the operator's Lease now (`None`: nobody, or not yet).
pub fn lease_holder(kube: &Kube) -> Option<String> {
    let lease = kube.get(&["get", "lease", "-n", OPERATOR_NS, "shardmesh-operator"])?;
    let holder = lease["spec"]["holderIdentity"].as_str()?;
    (!holder.is_empty()).then(|| holder.to_string())
}

/// Applies the harness PersistentVolume when `examples/bank.yaml` claims
/// storage, on a fresh directory under `dir` (a new run never reads an
/// older run's shard logs); the directory.
pub fn storage(kube: &Kube, dir: &Path) -> Option<std::path::PathBuf> {
    let example = std::fs::read_to_string(workspace().join("examples/bank.yaml"))
        .expect("examples/bank.yaml");
    if !example.contains("PersistentVolumeClaim") {
        println!("examples/bank.yaml claims no storage: no PersistentVolume");
        return None;
    }
    let path = workspace().join(HARNESS_PV);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the bank claims storage but {}: {e}", path.display()));
    let mut pv: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data = dir.join("bank-data");
    std::fs::create_dir_all(&data).expect("the bank's data directory");
    // Pods run as non-root users: the shared directory is theirs to write.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777))
        .expect("chmod the data directory");
    pv["spec"]["hostPath"]["path"] = Value::String(data.display().to_string());
    let name = pv["metadata"]["name"]
        .as_str()
        .unwrap_or("bank-data")
        .to_string();
    // A PV released by an earlier run never binds again.
    let _ = kube.run(&["delete", "pv", &name, "--ignore-not-found", "--wait=true"]);
    kube.stdin(&["apply", "-f", "-"], &pv.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    Some(data)
}

/// Applies the bank and waits for three Ready pods and the ShardedService's
/// `Ready` condition; the row of the install scenario (without traffic yet).
pub fn bank(kube: &Kube, operator_ready: Duration) -> (Instant, Row) {
    let _ = kube.run(&["create", "namespace", NS]);
    let applied = Instant::now();
    kube.must(&[
        "apply",
        "-n",
        NS,
        "-f",
        &workspace().join("examples/bank.yaml").display().to_string(),
    ]);
    let (ready, pods) = kube
        .wait_serving(NS, BANK, 3, applied, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("the bank: {e}"));
    let condition = poll(Duration::from_secs(60), || {
        let svc = kube.get(&["get", "shsvc", "-n", NS, "bank"])?;
        let ready = svc["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(())
    });
    assert!(
        condition.is_some(),
        "shsvc/bank not Ready: {}",
        kube.run(&["get", "shsvc", "-n", NS, "bank", "-o", "yaml"])
            .unwrap_or_default()
    );
    println!(
        "bank: 3 pods Ready {:.1} s after kubectl apply: {:?}",
        ready.as_secs_f64(),
        pods.iter().map(|p| (&p.name, &p.ip)).collect::<Vec<_>>()
    );
    println!("{}", kube.must(&["get", "shsvc", "-n", NS]));
    let mut row = Row::new("1. helm install + kubectl apply", None);
    row.ready = Some(ready);
    row.note = format!(
        "operator 2/2 Ready after {:.1} s",
        operator_ready.as_secs_f64()
    );
    (applied, row)
}

/// Mutual TLS is on: the sidecar config names the identity endpoint, and
/// every bank sidecar's certificate request reached the operator (its
/// TokenReviews, in the audit log).
pub fn assert_mtls(kube: &Kube, operator_user: &str) {
    let cm = kube
        .get(&["get", "configmap", "-n", NS, "bank-sidecar"])
        .expect("ConfigMap bank-sidecar");
    let config = cm["data"]["sidecar.yaml"].as_str().unwrap_or_default();
    assert!(
        config.contains("issuer") && config.contains("trustDomain"),
        "the bank's sidecars are not configured for mutual TLS:\n{config}"
    );
    let reviews = kube
        .cp
        .audit_events()
        .into_iter()
        .filter(|e| e.user.username == operator_user && e.verb == "create")
        .filter(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|o| o.resource == "tokenreviews")
        })
        .count();
    assert!(
        reviews >= 3,
        "{operator_user} reviewed {reviews} tokens; each of the 3 bank sidecars asks for a certificate"
    );
    println!("mTLS: the operator reviewed {reviews} ServiceAccount tokens for certificates");
}

/// The operator's ServiceAccount user (`system:serviceaccount:NS:NAME`).
pub fn operator_user(kube: &Kube) -> String {
    let list = kube
        .get(&["get", "deployments", "-n", OPERATOR_NS, "-l", OPERATOR])
        .expect("the operator Deployment");
    let sa = list["items"][0]["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    format!("system:serviceaccount:{OPERATOR_NS}:{sa}")
}

/// Steady traffic through the client pod: no fault, so no failure.
pub fn steady(suite: &mut Suite, mut row: Row, applied: Instant) {
    row.recovery = Some(suite.served_again(applied));
    let traffic = suite.load("steady", &[]).finish();
    crate::handoff::check_traffic(suite, "steady", &traffic, 0.999);
    let served_by = http::outbound_requests(&suite.client_admin);
    println!("steady: the client's sidecar answered {served_by} outbound requests");
    let load_row = Row::new("1. steady load", Some(&traffic));
    row.requests = load_row.requests;
    row.success = load_row.success;
    row.reasons = load_row.reasons;
    row.money = load_row.money;
    suite.record(row);
}
