use super::*;

const EXAMPLE: &str = r#"
pod:
  name: bank-0
  service: bank
app:
  address: 127.0.0.1:8080
services:
  - name: bank
    shards: 4
    routing:
      keyFromPath: /accounts/{key}
    resilience:
      retries:
        attempts: 2
    members:
      - name: bank-0
        inbound: 127.0.0.1:7401
        shards: [0, 1]
      - name: bank-1
        inbound: 127.0.0.2:7401
        shards: [2, 3]
"#;

#[test]
fn parses_example_with_defaults() {
    let c = SidecarConfig::from_yaml(EXAMPLE)
        .unwrap()
        .validated()
        .unwrap();
    let bank = c.service("bank").unwrap();
    assert_eq!(bank.resilience.retries.attempts, 2);
    assert_eq!(bank.resilience.retries.backoff_base_ms, 25);
    assert_eq!(bank.resilience.breaker.consecutive_failures, 5);
    assert_eq!(bank.resilience.backpressure.max_concurrency, 100);
    assert_eq!(c.listeners.outbound, "127.0.0.1:7400");
    assert_eq!(c.shutdown_grace_ms, 20_000);
}

#[test]
fn round_trips_through_yaml() {
    let c = SidecarConfig::from_yaml(EXAMPLE).unwrap();
    let text = c.to_yaml().unwrap();
    assert_eq!(SidecarConfig::from_yaml(&text).unwrap(), c);
}

#[test]
fn unknown_field_is_named() {
    let err = SidecarConfig::from_yaml("pod:\n  nmae: x\n").unwrap_err();
    assert!(err.to_string().contains("nmae"), "{err}");
}

#[test]
fn every_bad_field_is_named() {
    let mut c = SidecarConfig::from_yaml(EXAMPLE).unwrap();
    c.services[0].resilience.retries.attempts = 0;
    c.services[0].resilience.breaker.failure_percent = 0;
    c.services[0].members[1].shards = Some(vec![2, 9]);
    c.listeners.admin = "nope".into();
    let msg = c.validated().unwrap_err().to_string();
    for field in [
        "services[0].resilience.retries.attempts",
        "services[0].resilience.breaker.failurePercent",
        "services[0].members[1].shards: shard 9 is out of range",
        "services[0].members: static shard assignment leaves 1 of 4 shards unowned (first: 3)",
        "listeners.admin",
    ] {
        assert!(msg.contains(field), "missing {field} in {msg}");
    }
}

#[test]
fn pod_name_comes_from_env() {
    let dir = std::env::temp_dir().join(format!("shardmesh-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.yaml");
    std::fs::write(&path, EXAMPLE.replace("name: bank-0\n  service", "service")).unwrap();
    let err = SidecarConfig::load(&path, Vec::<(String, String)>::new()).unwrap_err();
    assert!(err.to_string().contains("pod.name: is required"), "{err}");
    let c = SidecarConfig::load(&path, [("SHARDMESH_POD_NAME", "bank-1")]).unwrap();
    assert_eq!(c.pod.name, "bank-1");
}

#[test]
fn missing_file_names_the_path() {
    let err = SidecarConfig::load(Path::new("/nonexistent/x.yaml"), Vec::<(&str, &str)>::new())
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.yaml"), "{err}");
}
