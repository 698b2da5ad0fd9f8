//! The operator against a real cluster: installs the CRD, runs
//! `shardmesh-operator run` against it, applies `examples/*.yaml` in a fresh
//! namespace and waits for every ShardedService to be `Ready`.
//!
//! Runs only when `KUBECONFIG` names a readable file; otherwise it prints why
//! it skipped and passes. Images: `SHARDMESH_E2E_SIDECAR_IMAGE` (default the
//! operator's default) must be pullable by the cluster; `SHARDMESH_E2E_TIMEOUT_SECS`
//! bounds the wait (default 300).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
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

fn start_operator(namespace: &str) -> Operator {
    let mut cmd = Command::new(operator_binary());
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

#[tokio::test]
async fn examples_become_ready_in_a_cluster() {
    let kubeconfig = match cluster_configured() {
        Ok(path) => path,
        Err(why) => {
            println!(
                "skipped: {why}; point KUBECONFIG at a cluster to run the operator cluster test"
            );
            return;
        }
    };
    println!("cluster test against {}", kubeconfig.display());
    let timeout = std::env::var("SHARDMESH_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let client = Client::try_default().await.expect("connect to the cluster");
    install_crd(&client, deadline).await;

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
    let _operator = start_operator(&namespace);

    let services: Api<ShardedService> = Api::namespaced(client.clone(), &namespace);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("examples")).expect("examples/") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nkind: ShardedService")
        {
            let mut svc: ShardedService = read_yaml(&path);
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
