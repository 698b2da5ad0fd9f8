//! The Node object and its heartbeat: registers the Node (capacity,
//! allocatable, podCIDR, InternalIP, Ready, node info), renews its Lease in
//! `kube-node-lease` every 10 s, and refreshes the Ready condition's
//! heartbeat every minute, so the node lifecycle controller keeps it Ready.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::config::Config;
use super::status::time;

/// Pods this node takes (kubelet's default).
const MAX_PODS: u32 = 110;
/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// How often the Node status heartbeat is written.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// CPUs of this machine.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Memory of this machine (bytes, `/proc/meminfo`).
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The Node's status (conditions with the heartbeat `now`).
fn node_status(cfg: &Config, version: &str, now: Timestamp, since: Timestamp) -> serde_json::Value {
    let capacity = json!({
        "cpu": cpus().to_string(),
        "memory": format!("{}Ki", memory_bytes() / 1024),
        "pods": MAX_PODS.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": time(now), "lastTransitionTime": time(since)})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "node agent has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "shardmesh node agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": cfg.node_ip.to_string()},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/etc/machine-id"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "osImage": "shardmesh node agent (host processes)",
            "containerRuntimeVersion": format!("shardmesh-node-agent://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

/// Registers the Node (or takes over an existing one) and writes its status.
pub async fn register(client: &Client, cfg: &Config) -> Result<(), String> {
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|_| "v0.0.0".into());
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.node_name,
            "labels": {
                "kubernetes.io/hostname": cfg.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.shardmesh.io/agent": "true",
            },
        },
        "spec": {"podCIDR": cfg.pod_cidr, "podCIDRs": [cfg.pod_cidr]},
    }))
    .map_err(|e| e.to_string())?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("register node {}: {e}", cfg.node_name)),
    }
    let status = json!({"status": node_status(cfg, &version, now, now)});
    nodes
        .patch_status(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .map_err(|e| format!("node {} status: {e}", cfg.node_name))?;
    Ok(())
}

/// Renews the Lease every [`LEASE_RENEW`] and the Node heartbeat every
/// minute, until the process ends; errors are logged and retried.
pub async fn heartbeat(client: Client, cfg: std::sync::Arc<Config>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|_| "v0.0.0".into());
    let since = Timestamp::now();
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew(&client, &leases, &nodes, &cfg).await {
            super::pod::tracing_log(&format!("lease: {e}"));
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            let status = json!({"status": node_status(&cfg, &version, Timestamp::now(), since)});
            if let Err(e) = nodes
                .patch_status(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
            {
                super::pod::tracing_log(&format!("node status: {e}"));
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

async fn renew(
    client: &Client,
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    cfg: &Config,
) -> Result<(), String> {
    let now = MicroTime(Timestamp::now());
    let patch = json!({"spec": {"renewTime": now, "holderIdentity": cfg.node_name, "leaseDurationSeconds": LEASE_SECONDS}});
    match leases
        .patch(
            &cfg.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            // The Lease is owned by the Node: gone together when someone
            // deleted the Node. Register again, as kubelet does.
            let node = match nodes
                .get_opt(&cfg.node_name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(n) => n,
                None => {
                    super::pod::tracing_log(&format!(
                        "node {} was deleted: registering again",
                        cfg.node_name
                    ));
                    register(client, cfg).await?;
                    nodes.get(&cfg.node_name).await.map_err(|e| e.to_string())?
                }
            };
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": cfg.node_name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": cfg.node_name,
                                         "uid": node.metadata.uid.unwrap_or_default()}],
                },
                "spec": {"holderIdentity": cfg.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": now, "acquireTime": MicroTime(Timestamp::now())},
            }))
            .map_err(|e| e.to_string())?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}
