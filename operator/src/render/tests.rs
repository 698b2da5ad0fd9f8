use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::crd::{DisruptionBudgetSpec, ShardedServiceStatus, SidecarSpec};
use crate::testing::fixtures::sharded_service;

fn children(svc: &ShardedService) -> Children {
    desired(svc, &Settings::default()).unwrap()
}

fn pod_spec(c: &Children) -> &k8s_openapi::api::core::v1::PodSpec {
    c.stateful_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn sidecar(c: &Children) -> &Container {
    &pod_spec(c).init_containers.as_ref().unwrap()[0]
}

#[test]
fn shards_default_to_ten_per_replica_and_stick() {
    let mut svc = sharded_service("ns", "bank");
    assert_eq!(resolved_shards(&svc), 30);
    svc.spec.replicas = 0;
    assert_eq!(resolved_shards(&svc), 10);
    // After creation the recorded count wins over a new replica count.
    svc.status = Some(ShardedServiceStatus {
        shards: Some(30),
        ..Default::default()
    });
    svc.spec.replicas = 7;
    assert_eq!(resolved_shards(&svc), 30);
    // And over a count written into the spec later (validate() reports that
    // one as invalid): what the pods run never changes.
    svc.spec.shards = Some(64);
    assert_eq!(resolved_shards(&svc), 30);
}

#[test]
fn sidecar_config_uses_the_spec_and_cluster_inputs() {
    let mut svc = sharded_service("shop", "bank");
    svc.spec.routing.key_from_path = Some("/accounts/{key}".into());
    svc.spec.resilience.retries.attempts = 5;
    svc.spec.gossip.probe_interval_ms = 2_000;
    let config = render_sidecar_config(&svc, &MeshInputs::cluster("shop", 30));
    assert_eq!(config.app.address, "127.0.0.1:8080");
    assert_eq!(config.pod.service, "bank");
    assert_eq!(
        config.pod.name, "",
        "the pod name comes from the downward API"
    );
    assert_eq!(config.services.len(), 1);
    let own = &config.services[0];
    assert_eq!((own.name.as_str(), own.shards), ("bank", 30));
    assert_eq!(
        own.routing.key_from_path.as_deref(),
        Some("/accounts/{key}")
    );
    assert_eq!(own.resilience.retries.attempts, 5);
    let m = &config.membership;
    assert_eq!(
        m.seeds.dns.as_deref(),
        Some("shardmesh-gossip.shop.svc.cluster.local:7946")
    );
    assert!(m.gossip.enabled);
    assert_eq!(m.gossip.probe_interval_ms, 2_000);
    assert_eq!(
        m.gossip.keyring_file.as_deref(),
        Some("/etc/shardmesh/gossip/keyring")
    );
    // The YAML round-trips through the sidecar's own parser.
    let yaml = config.to_yaml().unwrap();
    assert_eq!(
        shardmesh_config::SidecarConfig::from_yaml(&yaml).unwrap(),
        config
    );
}

#[test]
fn local_inputs_list_peers_once() {
    let svc = sharded_service("ns", "bank");
    let other = crate::testing::fixtures::sharded_service("ns", "sessions");
    let inputs = MeshInputs {
        shards: 4,
        seeds: Default::default(),
        gossip_enabled: false,
        keyring_file: None,
        peers: vec![
            config::service_config(&other, 8),
            config::service_config(&svc, 4),
        ],
        tls: None,
    };
    let config = render_sidecar_config(&svc, &inputs);
    let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bank", "sessions"]);
    assert!(!config.membership.gossip.enabled);
}

#[test]
fn sidecar_is_injected_as_a_native_sidecar() {
    let c = children(&sharded_service("ns", "bank"));
    let s = sidecar(&c);
    assert_eq!(s.name, SIDECAR_CONTAINER);
    assert_eq!(s.restart_policy.as_deref(), Some("Always"));
    assert_eq!(s.image.as_deref(), Some("ghcr.io/shardmesh/sidecar:0.1.0"));
    assert_eq!(
        s.args.as_ref().unwrap(),
        &["--config", "/etc/shardmesh/sidecar.yaml"]
    );
    let ports: Vec<_> = s
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap(),
                p.container_port,
                p.protocol.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("outbound".into(), 7400, "TCP".into()),
            ("inbound".into(), 7401, "TCP".into()),
            ("admin".into(), 7402, "TCP".into()),
            ("gossip-udp".into(), 7946, "UDP".into()),
            ("gossip-tcp".into(), 7946, "TCP".into()),
        ]
    );
    let ready = s
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(ready.path.as_deref(), Some("/ready"));
    assert_eq!(ready.port, IntOrString::String("admin".into()));
    let live = s
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(live.path.as_deref(), Some("/live"));
    let env: Vec<_> = s.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(
        env,
        [
            "SHARDMESH_POD_NAME",
            "SHARDMESH_ADVERTISE_HOST",
            "SHARDMESH_HOST_IP",
            "SHARDMESH_SERVICE"
        ]
    );
    let field = |i: usize| {
        s.env.as_ref().unwrap()[i]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path
            .clone()
    };
    assert_eq!(field(0), "metadata.name");
    assert_eq!(field(1), "status.podIP");
    assert_eq!(field(2), "status.hostIP");
    let mounts: Vec<_> = s
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        ["/etc/shardmesh/sidecar.yaml", "/etc/shardmesh/gossip"]
    );
}

#[test]
fn app_container_learns_the_outbound_address() {
    let c = children(&sharded_service("ns", "bank"));
    let app = &pod_spec(&c).containers[0];
    let env = app.env.as_ref().unwrap();
    assert_eq!(env[0].name, "SHARDMESH_OUTBOUND");
    assert_eq!(env[0].value.as_deref(), Some("http://127.0.0.1:7400"));
}

#[test]
fn app_stops_only_after_its_sidecar_drained() {
    let c = children(&sharded_service("ns", "bank"));
    let app = &pod_spec(&c).containers[0];
    let hook = app.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    let get = hook.http_get.as_ref().unwrap();
    assert_eq!(get.path.as_deref(), Some("/drain"));
    assert_eq!(get.port, IntOrString::Int(7402));
    assert!(
        get.host.is_none(),
        "the pod IP, where the admin port listens"
    );

    // A hook of the user's own stays.
    let mut svc = sharded_service("ns", "bank");
    let own = k8s_openapi::api::core::v1::LifecycleHandler {
        sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 5 }),
        ..Default::default()
    };
    svc.spec.template.spec.as_mut().unwrap().containers[0].lifecycle =
        Some(k8s_openapi::api::core::v1::Lifecycle {
            pre_stop: Some(own.clone()),
            post_start: None,
            stop_signal: None,
        });
    let c = children(&svc);
    let app = &pod_spec(&c).containers[0];
    assert_eq!(
        app.lifecycle.as_ref().unwrap().pre_stop.as_ref(),
        Some(&own)
    );
}

#[test]
fn user_init_containers_run_after_the_sidecar_starts() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.template.spec.as_mut().unwrap().init_containers = Some(vec![Container {
        name: "migrate".into(),
        ..Container::default()
    }]);
    let c = children(&svc);
    let names: Vec<_> = pod_spec(&c)
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["shardmesh-sidecar", "migrate"]);
}

#[test]
fn pod_template_carries_labels_annotations_and_volumes() {
    let c = children(&sharded_service("ns", "bank"));
    let sts = c.stateful_set.spec.as_ref().unwrap();
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(sts.service_name.as_deref(), Some("shardmesh-gossip"));
    let meta = sts.template.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(
        labels.get("shardmesh.io/mesh").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        labels.get("shardmesh.io/service").map(String::as_str),
        Some("bank")
    );
    let ann = meta.annotations.as_ref().unwrap();
    assert_eq!(
        ann.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ann.get("prometheus.io/port").map(String::as_str),
        Some("7402")
    );
    assert_eq!(
        ann.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );
    assert_eq!(ann.get(ANNOTATION_CHECKSUM), Some(&c.config_checksum));
    assert_eq!(c.config_checksum.len(), 64);
    let volumes: Vec<_> = pod_spec(&c)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["shardmesh-config", "shardmesh-gossip-key"]);
    assert_eq!(pod_spec(&c).termination_grace_period_seconds, Some(30));
    let cm = &c.config_map;
    assert_eq!(cm.metadata.name.as_deref(), Some("bank-sidecar"));
    let yaml = &cm.data.as_ref().unwrap()[CONFIG_FILE];
    assert_eq!(sha256_hex(yaml.as_bytes()), c.config_checksum);
}

#[test]
fn checksum_changes_with_the_sidecar_config_only() {
    let svc = sharded_service("ns", "bank");
    let base = children(&svc).config_checksum;
    let mut scaled = svc.clone();
    scaled.spec.replicas = 5;
    scaled.status = Some(ShardedServiceStatus {
        shards: Some(30),
        ..Default::default()
    });
    assert_eq!(
        children(&scaled).config_checksum,
        base,
        "scaling must not roll pods"
    );
    let mut policy = svc.clone();
    policy.spec.resilience.breaker.consecutive_failures = 9;
    assert_ne!(children(&policy).config_checksum, base);
    let mut routing = svc.clone();
    routing.spec.routing.key_from_path = Some("/accounts/{key}".into());
    assert_ne!(children(&routing).config_checksum, base);
    assert_eq!(
        children(&svc).config_checksum,
        base,
        "rendering is deterministic"
    );
}

#[test]
fn every_owned_child_points_at_the_service() {
    let c = children(&sharded_service("ns", "bank"));
    let metas = [
        &c.config_map.metadata,
        &c.stateful_set.metadata,
        &c.client_service.metadata,
        &c.disruption_budget.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ShardedService");
        assert_eq!(owners[0].uid, "uid-ns-bank");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
    }
    assert!(
        c.gossip_service.metadata.owner_references.is_none(),
        "shared by the namespace"
    );
}

#[test]
fn gossip_service_is_headless_and_namespace_wide() {
    let svc = gossip_service("ns");
    let spec = svc.spec.unwrap();
    assert_eq!(svc.metadata.name.as_deref(), Some("shardmesh-gossip"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(
        spec.selector
            .unwrap()
            .get("shardmesh.io/mesh")
            .map(String::as_str),
        Some("true")
    );
}

#[test]
fn no_disruption_budget_at_one_replica() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.replicas = 1;
    assert!(children(&svc).disruption_budget.is_none());
    svc.spec.replicas = 0;
    assert!(children(&svc).disruption_budget.is_none());
    svc.spec.replicas = 2;
    let pdb = children(&svc).disruption_budget.unwrap();
    assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    svc.spec.disruption_budget = Some(DisruptionBudgetSpec {
        max_unavailable: Some(IntOrString::String("25%".into())),
    });
    let pdb = children(&svc).disruption_budget.unwrap();
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(IntOrString::String("25%".into()))
    );
}

#[test]
fn sidecar_overrides_apply() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.sidecar = Some(SidecarSpec {
        image: Some("registry.local/sidecar:dev".into()),
        image_pull_policy: Some("Never".into()),
        resources: None,
        log_level: Some("debug".into()),
        max_request_body_bytes: None,
        tracing: None,
    });
    let c = children(&svc);
    assert_eq!(
        sidecar(&c).image.as_deref(),
        Some("registry.local/sidecar:dev")
    );
    assert_eq!(sidecar(&c).image_pull_policy.as_deref(), Some("Never"));
    let config = render_sidecar_config(&svc, &MeshInputs::cluster("ns", 30));
    assert_eq!(config.log.level, "debug");
    let flagged = desired(
        &sharded_service("ns", "bank"),
        &Settings {
            sidecar_image: "mirror/sidecar:1".into(),
            ..Settings::default()
        },
    )
    .unwrap();
    assert_eq!(sidecar(&flagged).image.as_deref(), Some("mirror/sidecar:1"));
}

#[test]
fn the_operators_default_collector_reaches_sidecars_without_their_own() {
    let settings = Settings {
        tracing_endpoint: Some("http://otel-collector.observability:4317".into()),
        tracing_sampling_ratio: Some("0.25".into()),
        ..Settings::default()
    };
    let env = |c: &Children| -> Vec<(String, String)> {
        sidecar(c)
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect()
    };
    let plain = desired(&sharded_service("ns", "bank"), &settings).unwrap();
    let plain = env(&plain);
    assert!(plain.contains(&(
        "SHARDMESH_TRACING_ENDPOINT".into(),
        "http://otel-collector.observability:4317".into()
    )));
    assert!(plain.contains(&("SHARDMESH_TRACING_SAMPLING_RATIO".into(), "0.25".into())));

    // A spec with its own tracing keeps it (rendered into the config).
    let mut own = sharded_service("ns", "bank");
    own.spec.sidecar = Some(SidecarSpec {
        tracing: Some(shardmesh_config::TracingConfig::to("http://mine:4317")),
        ..SidecarSpec::default()
    });
    let children = desired(&own, &settings).unwrap();
    assert!(env(&children)
        .iter()
        .all(|(k, _)| !k.starts_with("SHARDMESH_TRACING")));
    let config = render_sidecar_config(&own, &MeshInputs::cluster("ns", 30));
    assert_eq!(config.tracing.unwrap().endpoint, "http://mine:4317");
}

#[test]
fn gossip_secret_holds_one_base64_key_line() {
    let secret = gossip_secret("ns", &[7u8; 32]);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("shardmesh-gossip-key")
    );
    assert!(secret.metadata.owner_references.is_none());
    let line = String::from_utf8(secret.data.unwrap()["keyring"].0.clone()).unwrap();
    assert!(line.ends_with('\n'));
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .unwrap();
    assert_eq!(key, [7u8; 32]);
}

#[test]
fn objects_without_uid_or_namespace_are_refused() {
    let mut svc = sharded_service("ns", "bank");
    svc.metadata.uid = None;
    assert!(matches!(
        desired(&svc, &Settings::default()),
        Err(Error::MissingField("metadata.uid"))
    ));
    let mut svc = sharded_service("ns", "bank");
    svc.metadata.namespace = None;
    assert!(matches!(
        desired(&svc, &Settings::default()),
        Err(Error::MissingField("metadata.namespace"))
    ));
}

/// What the sidecar does at start in a pod: read the ConfigMap file, apply
/// the downward-API variables, validate. The rendered config must pass.
#[test]
fn sidecar_accepts_the_rendered_config_with_pod_env() {
    let mut svc = sharded_service("shop", "bank");
    svc.spec.routing.key_from_path = Some("/accounts/{key}".into());
    let c = children(&svc);
    let dir = std::env::temp_dir().join(format!("shardmesh-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(CONFIG_FILE);
    std::fs::write(&file, &c.config_map.data.as_ref().unwrap()[CONFIG_FILE]).unwrap();
    let env = [
        ("SHARDMESH_POD_NAME", "bank-0"),
        ("SHARDMESH_ADVERTISE_HOST", "10.1.2.3"),
        ("SHARDMESH_SERVICE", "bank"),
    ];
    let loaded = shardmesh_config::SidecarConfig::load(&file, env);
    std::fs::remove_dir_all(&dir).unwrap();
    let config = loaded.unwrap();
    assert_eq!(config.pod.name, "bank-0");
    assert_eq!(config.pod.advertise_host.as_deref(), Some("10.1.2.3"));
    assert_eq!(config.service("bank").unwrap().shards, 30);
}
