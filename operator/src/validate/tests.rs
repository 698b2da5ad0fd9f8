use super::*;
use crate::crd::ShardedServiceStatus;
use crate::testing::fixtures::sharded_service;
use k8s_openapi::api::core::v1::Container;

fn messages(svc: &ShardedService) -> Vec<String> {
    match validate(svc, crate::render::DEFAULT_TRUST_DOMAIN) {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    }
}

#[test]
fn fixture_is_valid() {
    assert_eq!(
        messages(&sharded_service("ns", "bank")),
        Vec::<String>::new()
    );
}

#[test]
fn shards_must_match_the_count_in_force() {
    let mut svc = sharded_service("ns", "bank");
    svc.status = Some(ShardedServiceStatus {
        shards: Some(30),
        ..Default::default()
    });
    assert!(messages(&svc).is_empty());
    svc.spec.shards = Some(30);
    assert!(messages(&svc).is_empty());
    svc.spec.shards = Some(31);
    assert_eq!(messages(&svc), [rules::SHARDS_FIXED.1]);
}

/// The defect of issue 19: created without `spec.shards` (20 resolved and
/// recorded), then patched to 7. The count in force stays 20 for rendering
/// and in the status written for the invalid spec, so a second reconcile
/// cannot launder the 7 in.
#[test]
fn a_shard_count_added_later_never_replaces_the_recorded_one() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.replicas = 2;
    svc.spec.shards = None;
    assert_eq!(crate::render::resolved_shards(&svc), 20);
    svc.status = Some(ShardedServiceStatus {
        shards: Some(20),
        ..Default::default()
    });
    svc.spec.shards = Some(7);
    assert_eq!(messages(&svc), [rules::SHARDS_FIXED.1]);
    assert_eq!(crate::render::resolved_shards(&svc), 20);
    svc.spec.replicas = 5;
    svc.spec.shards = None;
    assert_eq!(crate::render::resolved_shards(&svc), 20);
}

#[test]
fn template_needs_an_app_container() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.template.spec = None;
    assert_eq!(
        messages(&svc),
        ["template.spec must name at least one container (the app)"]
    );
    let mut svc = sharded_service("ns", "bank");
    if let Some(p) = svc.spec.template.spec.as_mut() {
        p.containers.clear();
    }
    assert_eq!(
        messages(&svc),
        ["template.spec must name at least one container (the app)"]
    );
}

#[test]
fn sidecar_container_name_is_reserved() {
    let mut svc = sharded_service("ns", "bank");
    if let Some(p) = svc.spec.template.spec.as_mut() {
        p.init_containers = Some(vec![Container {
            name: "shardmesh-sidecar".into(),
            ..Container::default()
        }]);
    }
    assert_eq!(
        messages(&svc),
        ["container name \"shardmesh-sidecar\" is reserved for the injected sidecar"]
    );
}

#[test]
fn sidecar_config_checks_name_the_spec_field() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.resilience.retries.attempts = 0;
    svc.spec.gossip.probe_timeout_ms = 5_000;
    svc.spec.routing.key_from_path = Some("/a/{key}/{key}".into());
    assert_eq!(
        messages(&svc),
        [
            "routing.keyFromPath: \"/a/{key}/{key}\" must contain exactly one '{key}' segment, found 2",
            "resilience.retries.attempts: must be between 1 and 10",
            "gossip.probeTimeoutMs: must be at least 1 and less than probeIntervalMs",
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.replicas = -2;
    svc.spec.app_port = 7946;
    svc.spec.shards = Some(0);
    assert_eq!(
        messages(&svc),
        [
            rules::REPLICAS.1,
            rules::SHARDS_RANGE.1,
            rules::APP_PORT_FREE.1
        ]
    );
}

#[test]
fn invalid_spec_displays_every_message() {
    let e = InvalidSpec(vec!["a".into(), "b".into()]);
    assert_eq!(e.to_string(), "a; b");
}
