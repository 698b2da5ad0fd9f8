use super::*;

const TWO: &str = r#"
apiVersion: shardmesh.io/v1alpha1
kind: ShardedService
metadata:
  name: bank
  annotations:
    shardmesh.io/local-command: "/bin/true --flag"
spec:
  replicas: 3
  appPort: 8080
  routing:
    keyFromPath: "/accounts/{key}"
  template:
    spec:
      containers:
        - name: bank
          image: bank
          env:
            - name: RUST_LOG
              value: info
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
---
apiVersion: shardmesh.io/v1alpha1
kind: ShardedService
metadata:
  name: user-db
spec:
  replicas: 2
  shards: 8
  appPort: 9000
  template:
    spec:
      containers:
        - name: db
          image: db
          command: ["/bin/sleep"]
          args: ["60"]
"#;

fn services() -> Vec<ShardedService> {
    // One directory per call: tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shardmesh-plan-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, TWO).unwrap();
    let svcs = load(&[file]).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    svcs
}

#[test]
fn loads_every_sharded_service_and_skips_other_kinds() {
    let svcs = services();
    let names: Vec<_> = svcs
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["bank", "user-db"]);
}

#[test]
fn pods_get_their_own_ip_seeds_keyring_and_peers() {
    let net = Network::Loopback { block: 0 };
    let plans = plan(&services(), &net, Path::new("/run/keyring")).unwrap();
    assert_eq!(plans[0].command, ["/bin/true", "--flag"]);
    assert_eq!(plans[1].command, ["/bin/sleep", "60"]);
    assert_eq!(plans[0].shards, 30);
    let pod = plans[0].pod(1, &net, Path::new("/run"));
    let c = &pod.sidecar;
    assert_eq!(pod.name, "bank-1");
    assert_eq!(c.pod.name, "bank-1");
    assert_eq!(c.listeners.outbound, "127.0.0.11:7400");
    assert_eq!(c.listeners.gossip, "127.0.0.11:7946");
    assert_eq!(c.app.address, "127.0.0.11:8080");
    // Every starting pod seeds, like the cluster's headless Service: a
    // restarted pod 0 still finds the others.
    assert_eq!(
        c.membership.seeds.static_seeds,
        [
            "127.0.0.10:7946",
            "127.0.0.11:7946",
            "127.0.0.12:7946",
            "127.0.1.10:7946",
            "127.0.1.11:7946"
        ]
    );
    assert!(c.membership.gossip.enabled);
    assert_eq!(
        c.membership.gossip.keyring_file.as_deref(),
        Some("/run/keyring")
    );
    let routed: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(routed, ["bank", "user-db"]);
    let env: BTreeMap<_, _> = pod.env.iter().cloned().collect();
    assert_eq!(env["BANK_LISTEN"], "127.0.0.11:8080");
    assert_eq!(env["BANK_DATA"], "/run/data/bank");
    assert_eq!(env["SHARDMESH_OUTBOUND"], "http://127.0.0.11:7400");
    assert_eq!(env["RUST_LOG"], "info");
    let db = plans[1].pod(0, &net, Path::new("/run"));
    assert_eq!(db.sidecar.app.address, "127.0.1.10:9000");
    assert!(db.env.iter().any(|(k, _)| k == "USER_DB_LISTEN"));
}

#[test]
fn rejects_what_the_operator_rejects() {
    let mut svcs = services();
    svcs[0].spec.app_port = 7401;
    let err = plan(&svcs, &Network::Loopback { block: 0 }, Path::new("/k")).unwrap_err();
    assert!(err.to_string().contains("appPort"), "{err}");
}

use std::collections::BTreeMap;
