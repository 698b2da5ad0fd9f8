//! The bank end to end on Kubernetes (issue 20, point 4): the whole user
//! story on the real control plane with pods run by the node agent, every
//! scenario under load and ending with the bank's money check (no
//! acknowledged operation lost or applied twice), its success rate and its
//! failures by mesh reason:
//!
//! 1. `helm install` (mTLS on: the operator's identity endpoint), the
//!    operator's two pods Ready, `kubectl apply` of `examples/bank.yaml`
//!    (with the harness's PersistentVolume), three bank pods Ready, traffic;
//! 2. `kubectl scale shsvc/bank --replicas 5`, then 3 (handoff);
//! 3. `kubectl delete pod bank-1` (graceful), a crash (every process of
//!    bank-2 SIGKILLed) and a pause (every process of bank-1 SIGSTOPped for
//!    9 s, then resumed: the chaos client's fault);
//! 4. a rolling update of the template: every pod replaced, one at a time;
//! 5. a drain through the Eviction API, honouring the PDB;
//! 6. the leading operator pod deleted: the standby leads, nothing moves;
//! 7. `helm uninstall`: nothing of the chart left.
//!
//! Traffic: `bank-load` runs in the node namespace against a client pod's
//! outbound listener (see `client.rs`): a mesh pod of its own service that
//! no scenario touches, so one client serves every scenario, including the
//! rollout and the drain that replace every bank pod. The bank's sagas
//! (transfers) go through the bank pods' own outbound listeners.
//!
//! Gated on `SHARDMESH_KUBE_E2E=1` and run inside the node network
//! namespace (`SHARDMESH_KUBE_NETNS`) with the netns cluster up and the
//! node agent's `node-1` Ready: `scripts/test.d/65-kube-pods.sh`.

#[path = "kube_bank/client.rs"]
mod client;
#[path = "kube_bank/control.rs"]
mod control;
#[path = "kube_bank/handoff.rs"]
mod handoff;
#[path = "kube_bank/install.rs"]
mod install;
#[path = "kube_bank/kubectl.rs"]
mod kubectl;
#[path = "kube_bank/pause.rs"]
mod pause;
#[path = "kube_bank/podns.rs"]
mod podns;
#[path = "kube_bank/report.rs"]
mod report;
#[path = "kube_bank/rollout.rs"]
mod rollout;
#[path = "kube_bank/series.rs"]
mod series;
#[path = "kube_bank/suite.rs"]
mod suite;

use std::time::{Duration, Instant};

use shardmesh_e2e::kube::{ControlPlane, DIR_ENV, E2E_ENV};
use shardmesh_e2e::{bins, is_root, shards};

use crate::kubectl::Kube;
use crate::suite::{Suite, NODE, NS, OPERATOR_NS, RELEASE, SHARDS};

/// Set by the stage to the node namespace this test runs in.
const NETNS_ENV: &str = "SHARDMESH_KUBE_NETNS";

/// The netns cluster with a Ready node, or why the suite cannot run here.
fn cluster() -> Result<Kube, String> {
    if std::env::var(E2E_ENV).as_deref() != Ok("1") {
        return Err(format!(
            "{E2E_ENV} is not 1 (scripts/test.d/65-kube-pods.sh sets it)"
        ));
    }
    let netns = std::env::var(NETNS_ENV).map_err(|_| {
        format!("{NETNS_ENV} is unset: run inside the node network namespace (scripts/test.d/65-kube-pods.sh)")
    })?;
    if !is_root() {
        return Err("needs root (pod network namespaces, SIGKILL of a pod's processes)".into());
    }
    let dir = std::env::var_os(DIR_ENV)
        .ok_or_else(|| format!("{DIR_ENV} is unset: no netns cluster to attach to"))?;
    let cp = ControlPlane::attach(std::path::Path::new(&dir))?;
    let kube = Kube { cp };
    let node = kube.get(&["get", "node", NODE]).ok_or_else(|| {
        format!("no Node {NODE} in the cluster of {netns}: the node agent does not run")
    })?;
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        return Err(format!("Node {NODE} is not Ready"));
    }
    Ok(kube)
}

/// Leaves the cluster as the suite found it, even when a scenario fails
/// (and clears what an interrupted earlier run left).
struct Cleanup(Kube);

impl Cleanup {
    fn run(&self, wait: bool) {
        let kube = &self.0;
        let _ = kube.run(&["uncordon", NODE]);
        let _ = kube.helm(&[
            "uninstall",
            RELEASE,
            "-n",
            OPERATOR_NS,
            "--ignore-not-found",
        ]);
        let wait = format!("--wait={wait}");
        let _ = kube.run(&[
            "delete",
            "namespace",
            NS,
            OPERATOR_NS,
            "--ignore-not-found",
            &wait,
            "--timeout=120s",
        ]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run(false);
    }
}

#[test]
fn the_bank_on_kubernetes_keeps_its_money_through_every_user_operation() {
    let kube = match cluster() {
        Ok(k) => k,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let begun = Instant::now();
    let cleanup = Cleanup(Kube {
        cp: ControlPlane::attach(kube.cp.dir()).expect("attach"),
    });
    cleanup.run(true);
    // bank-load comes from target/release (a no-op build with the stage's
    // SHARDMESH_E2E_PREBUILT=1).
    bins::ensure_built();
    let dir = kube
        .cp
        .dir()
        .join(format!("bank-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work directory");

    println!("--- 1. helm install, kubectl apply, traffic");
    let operator_ready = install::operator(&kube);
    let user = install::operator_user(&kube);
    install::storage(&kube, &dir);
    let (applied, row) = install::bank(&kube, operator_ready);
    install::assert_mtls(&kube, &user);
    client::create(&kube, NS).unwrap_or_else(|e| panic!("the client pod: {e}"));
    let (_, pods) = kube
        .wait_serving(
            NS,
            client::SELECTOR,
            1,
            Instant::now(),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("the client pod: {e}"));
    let ip = pods[0].ip.clone().expect("the client pod's IP");
    let mut suite = Suite {
        client: format!("{ip}:{}", client::OUTBOUND_PORT),
        client_admin: pods[0].admin(),
        kube,
        dir,
        keys: shards::one_key_per_shard(SHARDS),
        rows: Vec::new(),
        failures: Vec::new(),
    };
    install::steady(&mut suite, row, applied);

    println!("--- 2. kubectl scale 3 -> 5 -> 3");
    handoff::scale_out_and_in(&mut suite);
    println!("--- 3. kubectl delete pod; crash; pause");
    handoff::delete_pod(&mut suite);
    handoff::crash(&mut suite);
    pause::pause(&mut suite);
    println!("--- 4. rolling update");
    rollout::rolling_update(&mut suite);
    println!("--- 5. drain");
    rollout::drain(&mut suite);
    println!("--- 6. operator failover");
    control::operator_failover(&mut suite, &user);
    println!("--- 7. helm uninstall");
    control::uninstall(&mut suite);

    report::print(&suite.rows);
    println!("whole suite: {:.0} s", begun.elapsed().as_secs_f64());
    assert!(
        suite.failures.is_empty(),
        "failed checks:\n{}",
        suite.failures.join("\n")
    );
}
