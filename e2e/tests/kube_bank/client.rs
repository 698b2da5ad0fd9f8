//! The client pod: where `bank-load` sends its traffic. It is a mesh member
//! of its own service (`bank-client`, one shard) built from the bank's own
//! pod template as the operator rendered it (the same sidecar, identity,
//! CA and keyring), so its sidecar joins the namespace's gossip and routes
//! `x-shardmesh-service: bank` like any pod would, while no scenario on the
//! bank (scale, delete, crash, rollout, drain) ever touches it.
//!
//! What makes it a client rather than a fourth bank replica:
//! - its labels leave out `shardmesh.io/service: bank`, so the bank's
//!   StatefulSet, PDB and client Service do not select it, and its sidecar
//!   config names its own service first and the bank's routes second;
//! - its outbound listener binds the pod IP (`0.0.0.0:7400`) instead of
//!   loopback, so `bank-load` in the node namespace reaches it over the
//!   bridge;
//! - its app is the `tally` sample, not a bank: the sidecar acquires the
//!   client's one shard through the app's callback, and a bank refuses a
//!   callback for any service but `bank`, while tally (gRPC) answers any
//!   unknown path with 200 + `grpc-status: 12` — a stateless app as far as
//!   the callback goes. The bank's claim is not mounted (an emptyDir of the
//!   same name stands in), so nothing of the client touches the shard logs.

use serde_json::{json, Value};

use crate::kubectl::Kube;

/// The client pod's name and service.
pub const NAME: &str = "bank-client";
/// Its label selector.
pub const SELECTOR: &str = "shardmesh.io/client=bank-client";
/// Port of its outbound listener (on the pod IP).
pub const OUTBOUND_PORT: u16 = 7400;

/// The client's sidecar config from the bank's (`bank-sidecar`'s
/// `sidecar.yaml`): its own one-shard service first, the bank's routes
/// kept, the outbound listener on every address of the pod.
pub fn sidecar_config(bank_yaml: &str) -> Result<String, String> {
    let mut v: Value =
        serde_saphyr::from_str(bank_yaml).map_err(|e| format!("bank-sidecar config: {e}"))?;
    let services = v["services"]
        .as_array_mut()
        .ok_or("bank-sidecar config lists no services")?;
    let mut own = services
        .first()
        .cloned()
        .ok_or("bank-sidecar config lists no services")?;
    own["name"] = json!(NAME);
    own["shards"] = json!(1);
    services.insert(0, own);
    v["pod"]["service"] = json!(NAME);
    v["listeners"]["outbound"] = json!(format!("0.0.0.0:{OUTBOUND_PORT}"));
    // JSON is YAML: the sidecar reads it as it reads the operator's file.
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// The client Pod from the bank StatefulSet's pod `template`.
pub fn pod(template: &Value) -> Value {
    let mut spec = template["spec"].clone();
    // The app: tally at the address the bank's app had (same image tag).
    let bank = &spec["containers"][0];
    let image = bank["image"]
        .as_str()
        .unwrap_or("ghcr.io/shardmesh/bank")
        .replace("/bank", "/tally");
    let port = bank["ports"][0]["containerPort"].as_u64().unwrap_or(8080);
    spec["containers"] = json!([{
        "name": "tally",
        "image": image,
        "env": [{"name": "TALLY_LISTEN", "value": format!("127.0.0.1:{port}")}],
    }]);
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        for vol in volumes {
            if vol["configMap"]["name"] == "bank-sidecar" {
                vol["configMap"]["name"] = json!(format!("{NAME}-sidecar"));
            }
            if !vol["persistentVolumeClaim"].is_null() {
                *vol = json!({"name": vol["name"].clone(), "emptyDir": {}});
            }
        }
    }
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            for e in c["env"].as_array_mut().into_iter().flatten() {
                // The downward-API override of `pod.service` (one ConfigMap
                // per service): this pod is the client's only member.
                if e["name"] == "SHARDMESH_SERVICE" {
                    e["value"] = json!(NAME);
                }
            }
        }
    }
    let mut labels = template["metadata"]["labels"].clone();
    if let Some(map) = labels.as_object_mut() {
        map.remove("shardmesh.io/service");
    }
    labels["shardmesh.io/client"] = json!(NAME);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": NAME,
            "labels": labels,
            "annotations": template["metadata"]["annotations"].clone(),
        },
        "spec": spec,
    })
}

/// Creates the client's ConfigMap and Pod in `ns` next to the bank.
pub fn create(kube: &Kube, ns: &str) -> Result<(), String> {
    let sts = kube
        .get(&["get", "statefulset", "-n", ns, "bank"])
        .ok_or("no StatefulSet bank")?;
    let cm = kube
        .get(&["get", "configmap", "-n", ns, "bank-sidecar"])
        .ok_or("no ConfigMap bank-sidecar")?;
    let bank_yaml = cm["data"]["sidecar.yaml"]
        .as_str()
        .ok_or("bank-sidecar has no sidecar.yaml")?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{NAME}-sidecar")},
        "data": {"sidecar.yaml": sidecar_config(bank_yaml)?},
    });
    kube.stdin(&["apply", "-n", ns, "-f", "-"], &config.to_string())?;
    let pod = pod(&sts["spec"]["template"]);
    kube.stdin(&["apply", "-n", ns, "-f", "-"], &pod.to_string())?;
    Ok(())
}

/// Deletes the client's Pod and ConfigMap.
pub fn delete(kube: &Kube, ns: &str) {
    let cm = format!("configmap/{NAME}-sidecar");
    let pod = format!("pod/{NAME}");
    let _ = kube.run(&[
        "delete",
        "-n",
        ns,
        &pod,
        &cm,
        "--ignore-not-found",
        "--wait=true",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BANK: &str = "pod:\n  name: \"\"\n  service: bank\nlisteners:\n  outbound: 127.0.0.1:7400\n  inbound: 0.0.0.0:7401\nservices:\n- name: bank\n  shards: 30\n  routing:\n    keyFromPath: /accounts/{key}\n";

    #[test]
    fn the_client_config_adds_its_service_and_keeps_the_banks_routes() {
        let text = sidecar_config(BANK).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["pod"]["service"], NAME);
        assert_eq!(v["listeners"]["outbound"], "0.0.0.0:7400");
        assert_eq!(v["listeners"]["inbound"], "0.0.0.0:7401");
        assert_eq!(v["services"][0]["name"], NAME);
        assert_eq!(v["services"][0]["shards"], 1);
        assert_eq!(v["services"][1]["name"], "bank");
        assert_eq!(v["services"][1]["shards"], 30);
        assert_eq!(
            v["services"][1]["routing"]["keyFromPath"],
            "/accounts/{key}"
        );
    }

    #[test]
    fn the_client_pod_is_not_selected_by_the_bank_and_keeps_no_claim() {
        let template = json!({
            "metadata": {"labels": {"shardmesh.io/service": "bank", "shardmesh.io/mesh": "true"}},
            "spec": {
                "initContainers": [{"name": "shardmesh-sidecar", "env": [
                    {"name": "SHARDMESH_SERVICE", "value": "bank"},
                    {"name": "SHARDMESH_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ]}],
                "containers": [{"name": "bank", "image": "ghcr.io/shardmesh/bank:0.1.0",
                    "ports": [{"containerPort": 8080}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [
                    {"name": "shardmesh-config", "configMap": {"name": "bank-sidecar"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "bank-data"}}
                ]
            }
        });
        let p = pod(&template);
        let labels = p["metadata"]["labels"].as_object().unwrap();
        assert!(!labels.contains_key("shardmesh.io/service"), "{labels:?}");
        assert_eq!(labels["shardmesh.io/mesh"], "true");
        assert_eq!(labels["shardmesh.io/client"], NAME);
        let spec = &p["spec"];
        assert_eq!(
            spec["volumes"][0]["configMap"]["name"],
            "bank-client-sidecar"
        );
        assert_eq!(spec["volumes"][1], json!({"name": "data", "emptyDir": {}}));
        assert_eq!(spec["initContainers"][0]["env"][0]["value"], NAME);
        assert_eq!(
            spec["containers"],
            json!([{"name": "tally", "image": "ghcr.io/shardmesh/tally:0.1.0",
                "env": [{"name": "TALLY_LISTEN", "value": "127.0.0.1:8080"}]}])
        );
        assert_eq!(
            spec["initContainers"][0]["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
    }
}
