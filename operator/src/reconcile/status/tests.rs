use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::testing::fixtures::sharded_service;

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn sts(generation: i64, observed: i64, ready: i32, updated: i32) -> StatefulSet {
    let mut s = StatefulSet::default();
    s.metadata.generation = Some(generation);
    s.status = Some(StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        observed_generation: Some(observed),
        ..StatefulSetStatus::default()
    });
    s
}

fn reasons(status: &ShardedServiceStatus) -> Vec<(String, String)> {
    status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), format!("{}/{}", c.status, c.reason)))
        .collect()
}

fn observe(svc: &ShardedService, set: Option<&StatefulSet>, now: &Time) -> ShardedServiceStatus {
    compute(
        &Observed {
            svc,
            shards: 30,
            checksum: Some("abc"),
            stateful_set: set,
            invalid: None,
        },
        now,
    )
}

#[test]
fn a_rollout_in_progress_is_progressing_and_not_ready() {
    let svc = sharded_service("ns", "bank");
    let status = observe(&svc, Some(&sts(2, 1, 3, 1)), &at(1));
    assert_eq!(
        reasons(&status),
        [
            ("Ready".into(), "False/ReplicasNotReady".into()),
            ("Progressing".into(), "True/RollingOut".into()),
            ("Degraded".into(), "False/AsExpected".into()),
        ]
    );
    let ready = find(&status, "Ready").unwrap();
    assert!(
        ready
            .message
            .contains("kubectl describe pods -l shardmesh.io/service=bank"),
        "{}",
        ready.message
    );
}

#[test]
fn pods_not_ready_after_the_rollout_are_degraded() {
    let svc = sharded_service("ns", "bank");
    let status = observe(&svc, Some(&sts(1, 1, 1, 3)), &at(1));
    assert_eq!(find(&status, "Degraded").unwrap().reason, "PodsUnavailable");
    assert_eq!(
        find(&status, "Degraded").unwrap().message.split(' ').next(),
        Some("2")
    );
    assert_eq!(status.ready_replicas, 1);
}

#[test]
fn scaled_to_zero_is_ready() {
    let mut svc = sharded_service("ns", "bank");
    svc.spec.replicas = 0;
    let status = observe(&svc, Some(&sts(1, 1, 0, 0)), &at(1));
    assert_eq!(find(&status, "Ready").unwrap().reason, "ScaledToZero");
}

#[test]
fn unchanged_conditions_keep_their_transition_time() {
    let mut svc = sharded_service("ns", "bank");
    let first = observe(&svc, Some(&sts(1, 1, 3, 3)), &at(100));
    assert_eq!(find(&first, "Ready").unwrap().reason, "AllReplicasReady");
    svc.status = Some(first.clone());
    let again = observe(&svc, Some(&sts(1, 1, 3, 3)), &at(200));
    assert_eq!(again, first, "a steady state computes an equal status");
    let degraded = observe(&svc, Some(&sts(1, 1, 2, 3)), &at(300));
    assert_eq!(
        find(&degraded, "Ready").unwrap().last_transition_time,
        at(300)
    );
    assert_eq!(
        find(&degraded, "Progressing").unwrap().last_transition_time,
        at(100)
    );
}

#[test]
fn status_records_shards_selector_and_checksum() {
    let svc = sharded_service("ns", "bank");
    let status = observe(&svc, None, &at(1));
    assert_eq!(status.shards, Some(30));
    assert_eq!(
        status.selector.as_deref(),
        Some("shardmesh.io/service=bank")
    );
    assert_eq!(status.config_checksum.as_deref(), Some("abc"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(find(&status, "Progressing").unwrap().reason, "RollingOut");
}
