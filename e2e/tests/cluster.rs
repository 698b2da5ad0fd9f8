//! The operator against a cluster: installs the CRD, runs
//! `shardmesh-operator run` against it, applies `examples/*.yaml` in a fresh
//! namespace and checks what the cluster does with them.
//!
//! Two modes:
//! - `SHARDMESH_KUBE_E2E=1` (scripts/test.d/60-kube.sh): the local control
//!   plane of `scripts/kube/cluster`, which has no kubelet. The test registers
//!   a Node by hand, marks it Ready and renews its Lease, and asserts what a
//!   control plane alone shows: the StatefulSet controller creates every pod
//!   (the native sidecar accepted), the scheduler binds each to that Node, and
//!   the ShardedService reports the pods as not ready.
//! - else, when `KUBECONFIG` names a readable file: a real cluster, where every
//!   ShardedService must become `Ready`. Images: `SHARDMESH_E2E_SIDECAR_IMAGE`
//!   (default the operator's default) must be pullable by the cluster;
//!   `SHARDMESH_E2E_TIMEOUT_SECS` bounds the wait (default 300).
//!
//! Otherwise it prints why it skipped and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use shardmesh_e2e::kube::{poll_async, ControlPlane};
use shardmesh_operator::crd::ShardedService;

const MANAGER: &str = "shardmesh-e2e";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cluster_configured() -> Result<PathBuf, String> {
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        return Err("KUBECONFIG is not set".into());
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!(
            "KUBECONFIG={} is not a readable file",
            path.display()
        ));
    }
    Ok(path)
}

/// Kills the operator process when the test ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn operator_binary() -> PathBuf {
    for profile in ["release", "debug"] {
        let bin = root()
            .join("target")
            .join(profile)
            .join("shardmesh-operator");
        if bin.is_file() {
            return bin;
        }
    }
    panic!("build the operator first: cargo build --release -p shardmesh-operator");
}

fn start_operator(namespace: &str, kubeconfig: &Path) -> Operator {
    let mut cmd = Command::new(operator_binary());
    cmd.env("KUBECONFIG", kubeconfig);
    cmd.args([
        "run",
        "--no-leader-election",
        "--listen",
        "127.0.0.1:0",
        "--namespace",
        namespace,
    ])
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit());
    if let Ok(image) = std::env::var("SHARDMESH_E2E_SIDECAR_IMAGE") {
        cmd.args(["--sidecar-image", &image]);
    }
    Operator(cmd.spawn().expect("start shardmesh-operator"))
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_ready(svc: &ShardedService) -> bool {
    svc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn install_crd(client: &Client, deadline: Instant) {
    let crd: CustomResourceDefinition = read_yaml(&root().join("crds/shardedservice.yaml"));
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &crd.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    loop {
        let live = api.get(&crd.name_any()).await.expect("read the CRD");
        let established = live
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the CRD did not become Established"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A Node with no kubelet behind it: registered, marked Ready, its Lease
/// renewed every 5 s by a task (what a kubelet's heartbeat does) until drop.
struct HandMadeNode {
    name: String,
    nodes: Api<Node>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl HandMadeNode {
    async fn register(client: &Client, name: &str) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        });
        nodes
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&node))
            .await
            .expect("register the Node");
        let status = serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "hand-made by e2e/tests/cluster.rs (no kubelet)",
                    "lastHeartbeatTime": now, "lastTransitionTime": now
                }]
            }
        });
        nodes
            .patch_status(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .expect("mark the Node Ready");
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease_name = name.to_string();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let lease = serde_json::json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": lease_name},
                    "spec": {
                        "holderIdentity": lease_name, "leaseDurationSeconds": 40,
                        "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
                    }
                });
                if let Err(e) = leases
                    .patch(
                        &lease_name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(&lease),
                    )
                    .await
                {
                    eprintln!("node lease renewal failed: {e}");
                }
            }
        });
        Self {
            name: name.into(),
            nodes,
            heartbeat,
        }
    }

    /// True once the node lifecycle controller lifted the not-ready taint.
    async fn schedulable(&self) -> bool {
        let Ok(node) = self.nodes.get(&self.name).await else {
            return false;
        };
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        taints
            .iter()
            .all(|t| t.effect != "NoSchedule" && t.effect != "NoExecute")
    }
}

impl Drop for HandMadeNode {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// What a control plane without a kubelet can show: every pod created by the
/// StatefulSet controller and bound by the scheduler to the hand-made Node;
/// the service reports its pods as not ready.
async fn control_plane_checks(
    client: &Client,
    namespace: &str,
    node: &HandMadeNode,
    names: &[String],
) {
    let services: Api<ShardedService> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let svc = services.get(name).await.expect("read ShardedService");
        let want = usize::try_from(svc.spec.replicas).unwrap_or(0);
        let started = Instant::now();
        let bound = poll_async(Duration::from_secs(90), || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("shardmesh.io/service={name}")))
                .await
                .ok()?;
            let on_node = list
                .items
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
                })
                .count();
            (list.items.len() == want && on_node == want).then_some(list.items)
        })
        .await;
        let Some(bound) = bound else {
            let list = pods.list(&ListParams::default()).await.ok();
            panic!(
                "{name}: {want} pods not created and bound within 90 s: {:?}",
                list.map(|l| l
                    .items
                    .iter()
                    .map(|p| (
                        p.name_any(),
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        p.status.as_ref().and_then(|s| s.conditions.clone())
                    ))
                    .collect::<Vec<_>>())
            );
        };
        for pod in &bound {
            let spec = pod.spec.as_ref().expect("pod spec");
            let sidecar = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| c.name == "shardmesh-sidecar")
                .expect("the sidecar init container");
            assert_eq!(
                sidecar.restart_policy.as_deref(),
                Some("Always"),
                "native sidecar"
            );
        }
        println!(
            "{name}: {want} pods created and bound to {} in {:.1} s",
            node.name,
            started.elapsed().as_secs_f64()
        );
        let not_ready = poll_async(Duration::from_secs(30), || async {
            let svc = services.get(name).await.ok()?;
            let status = svc.status?;
            status
                .conditions
                .iter()
                .any(|c| {
                    c.type_ == "Ready" && c.status == "False" && c.reason == "ReplicasNotReady"
                })
                .then_some(status.replicas)
        })
        .await;
        assert!(
            not_ready.is_some(),
            "{name}: status must say the pods are not ready"
        );
    }
}

/// Deletes the namespace and waits until it is gone, so later tests on the
/// same control plane see nothing of this one. Pods bound to a Node wait
/// for its kubelet to confirm their deletion; there is none, so they are
/// deleted with grace period 0 (what a kubelet's confirmation amounts to).
async fn remove_namespace(client: &Client, namespace: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let gone = poll_async(Duration::from_secs(90), || async {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let _ = pods
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
            }
        }
        matches!(namespaces.get_opt(namespace).await, Ok(None)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "namespace {namespace} not gone within 90 s");
}

/// The claims an example declares beside its ShardedService (the bank's
/// shared RWX claim), and for them the harness's hostPath PersistentVolume:
/// without a bound claim the scheduler leaves the pods Pending.
fn apply_claims(cp: &ControlPlane, namespace: &str, text: &str) {
    let claims: Vec<&str> = text
        .split("\n---")
        .filter(|doc| doc.contains("\nkind: PersistentVolumeClaim"))
        .collect();
    if claims.is_empty() {
        return;
    }
    let apply = |args: &[&str], input: String| {
        let mut child = cp
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run kubectl");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
            .expect("write manifest");
        let status = child.wait().expect("kubectl");
        assert!(status.success(), "kubectl {args:?} failed");
    };
    let pv = std::fs::read_to_string(root().join("e2e/fixtures/bank-data-pv.yaml"))
        .expect("e2e/fixtures/bank-data-pv.yaml");
    apply(&["apply", "-f", "-"], pv);
    apply(
        &["apply", "-n", namespace, "-f", "-"],
        claims.join("\n---\n"),
    );
}

#[tokio::test]
async fn examples_in_a_cluster() {
    let control_plane = match ControlPlane::for_test() {
        Ok(cp) => Some(cp),
        Err(why) => {
            println!("no local control plane: {why}");
            None
        }
    };
    let kubeconfig = match &control_plane {
        Some(cp) => cp.kubeconfig(),
        None => match cluster_configured() {
            Ok(path) => path,
            Err(why) => {
                println!(
                    "skipped: {why}; point KUBECONFIG at a cluster to run the operator cluster test"
                );
                return;
            }
        },
    };
    println!("cluster test against {}", kubeconfig.display());
    let timeout = std::env::var("SHARDMESH_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let client = shardmesh_e2e::kube::client_for(&kubeconfig)
        .await
        .expect("connect to the cluster");
    install_crd(&client, deadline).await;
    let node = match &control_plane {
        Some(_) => {
            let node = HandMadeNode::register(&client, "shardmesh-e2e-node").await;
            let ready = poll_async(Duration::from_secs(60), || async {
                node.schedulable().await.then_some(())
            })
            .await;
            assert!(
                ready.is_some(),
                "the hand-made Node kept a NoSchedule taint"
            );
            Some(node)
        }
        None => None,
    };

    let namespace = format!("shardmesh-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
    }))
    .expect("namespace object");
    namespaces
        .patch(&namespace, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
        .await
        .expect("create the test namespace");
    let _operator = start_operator(&namespace, &kubeconfig);

    let services: Api<ShardedService> = Api::namespaced(client.clone(), &namespace);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nkind: ShardedService")
        {
            if let Some(cp) = &control_plane {
                apply_claims(cp, &namespace, &text);
            }
            let mut svc = shardmesh_operator::cli::sharded_service_from_yaml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            svc.metadata.namespace = Some(namespace.clone());
            services
                .patch(
                    &svc.name_any(),
                    &PatchParams::apply(MANAGER),
                    &Patch::Apply(&svc),
                )
                .await
                .unwrap_or_else(|e| panic!("apply {}: {e}", path.display()));
            names.push(svc.name_any());
        }
    }
    assert!(
        names.len() >= 2,
        "expected the example ShardedServices, found {names:?}"
    );

    if let Some(node) = &node {
        control_plane_checks(&client, &namespace, node, &names).await;
        drop(_operator);
        remove_namespace(&client, &namespace).await;
        let _ = node
            .nodes
            .delete(&node.name, &DeleteParams::default())
            .await;
        return;
    }

    let mut pending = names.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for name in pending {
            let svc = services.get(&name).await.expect("read ShardedService");
            if !is_ready(&svc) {
                still.push(name);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() > deadline {
                for name in &pending {
                    let svc = services.get(name).await.ok();
                    eprintln!("{name} not Ready: {:?}", svc.and_then(|s| s.status));
                }
                let _ = namespaces
                    .delete(&namespace, &DeleteParams::default())
                    .await;
                panic!("not Ready within {timeout} s: {pending:?}");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    println!("Ready: {names:?}");
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete the test namespace");
}
