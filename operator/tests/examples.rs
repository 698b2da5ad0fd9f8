//! The example manifests are valid ShardedServices and render to every child.

use std::path::PathBuf;

use shardmesh_operator::cli::render_file;
use shardmesh_operator::render::Settings;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn kinds(stream: &str) -> Vec<String> {
    stream
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(String::from)
        .collect()
}

#[test]
fn bank_renders_every_child() {
    let out = render_file(&example("bank.yaml"), &Settings::default()).unwrap();
    assert_eq!(
        kinds(&out),
        [
            "ConfigMap",
            "StatefulSet",
            "Service",
            "Service",
            "Secret",
            "PodDisruptionBudget"
        ]
    );
    assert!(out.contains("keyFromPath: /accounts/{key}"), "{out}");
    assert!(out.contains("image: ghcr.io/shardmesh/bank:0.1.0"));
    // The shared claim beside the ShardedService reaches the bank container,
    // with the data directory pointed at it.
    assert!(out.contains("claimName: bank-data"), "{out}");
    assert!(out.contains("mountPath: /var/lib/bank"), "{out}");
    assert!(out.contains("name: BANK_DATA\n"), "{out}");
}

#[test]
fn bank_declares_a_shared_claim() {
    let text = std::fs::read_to_string(example("bank.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let claim = docs
        .iter()
        .find(|d| d["kind"] == "PersistentVolumeClaim")
        .expect("a PersistentVolumeClaim in bank.yaml");
    assert_eq!(claim["metadata"]["name"], "bank-data");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteMany");
}

#[test]
fn a_manifest_with_two_services_is_refused() {
    let dir = std::env::temp_dir().join(format!("shardmesh-render2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let two = dir.join("two.yaml");
    let bank = std::fs::read_to_string(example("bank.yaml")).unwrap();
    std::fs::write(&two, format!("{bank}\n---\n{bank}")).unwrap();
    let err = render_file(&two, &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 ShardedService documents"), "{err}");
    std::fs::write(&two, "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Secret\n")
        .unwrap();
    let err = render_file(&two, &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no document of kind ShardedService"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sessions_renders_with_header_routing() {
    let out = render_file(&example("sessions.yaml"), &Settings::default()).unwrap();
    assert!(out.contains("keyHeader: x-session-id"), "{out}");
    assert!(out.contains("shards: 64"));
    assert!(out.contains("address: 127.0.0.1:9000"));
}

#[test]
fn invalid_manifest_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("shardmesh-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: shardmesh.io/v1alpha1\nkind: ShardedService\nmetadata: {name: x}\n\
         spec: {appPort: 7400, template: {spec: {containers: [{name: a}]}}}\n",
    )
    .unwrap();
    let err = render_file(&bad, &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("appPort must not be a sidecar port"), "{err}");
    std::fs::write(&bad, "not: [a, sharded service").unwrap();
    let err = render_file(&bad, &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a ShardedService"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
