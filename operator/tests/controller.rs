//! The whole Controller, watches included, against the in-memory API server.
//! Tokio's clock is paused: time advances only when every task is idle, so
//! requeues and backoffs are deterministic and the tests take milliseconds.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use shardmesh_operator::metrics::Metrics;
use shardmesh_operator::reconcile::{self, Context, ErrorBackoff};
use shardmesh_operator::render::Settings;
use shardmesh_operator::testing::fake_api::{FakeApi, Fault};
use shardmesh_operator::testing::fixtures::sharded_service;
use tokio::sync::oneshot;

const SHSVC: &str = "shardmesh.io/v1alpha1/shardedservices";
const STS: &str = "apps/v1/statefulsets";
const CM: &str = "v1/configmaps";
const SVC: &str = "v1/services";
const PDB: &str = "policy/v1/poddisruptionbudgets";
const SECRET: &str = "v1/secrets";

struct Running {
    ctx: Arc<Context>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(api: FakeApi) -> Self {
        let mut ctx = Context::new(
            api.client(),
            Settings::default(),
            Metrics::new().unwrap(),
            None,
        );
        ctx.backoff = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ctx = Arc::new(ctx);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(reconcile::run(ctx.clone(), None, async move {
            let _ = stopped.await;
        }));
        Self {
            ctx,
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("controller stops on shutdown")
            .expect("controller task does not panic");
    }
}

fn new_api() -> FakeApi {
    let api = FakeApi::new();
    api.simulate_ready_statefulsets(true);
    api
}

fn add_service(api: &FakeApi, name: &str) -> Value {
    let mut svc = serde_json::to_value(sharded_service("shop", name)).unwrap();
    // The fake server assigns uid and generation, as a real one would.
    svc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "namespace");
    api.put(SHSVC, svc)
}

/// Waits (in virtual time) until `check` holds; fails after a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn condition(api: &FakeApi, name: &str, type_: &str) -> Option<(String, String)> {
    let svc = api.get(SHSVC, "shop", name)?;
    let c = svc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

fn is_ready(api: &FakeApi, name: &str) -> bool {
    condition(api, name, "Ready") == Some(("True".into(), "AllReplicasReady".into()))
}

fn checksum(api: &FakeApi) -> String {
    let sts = api.get(STS, "shop", "bank").unwrap_or_default();
    sts["spec"]["template"]["metadata"]["annotations"]["shardmesh.io/config-checksum"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn create_makes_owned_children_and_becomes_ready() {
    let api = new_api();
    let svc = add_service(&api, "bank");
    let uid = svc["metadata"]["uid"].clone();
    let running = Running::start(api.clone());
    eventually("bank is Ready", || is_ready(&api, "bank")).await;

    for (collection, name) in [
        (STS, "bank"),
        (CM, "bank-sidecar"),
        (SVC, "bank"),
        (PDB, "bank"),
    ] {
        let child = api
            .get(collection, "shop", name)
            .unwrap_or_else(|| panic!("{collection} {name}"));
        let owner = &child["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].clone(), owner["kind"].as_str()),
            (uid.clone(), Some("ShardedService"))
        );
        assert_eq!(owner["controller"], true);
    }
    let gossip = api
        .get(SVC, "shop", "shardmesh-gossip")
        .expect("gossip service");
    assert_eq!(gossip["spec"]["publishNotReadyAddresses"], true);
    assert!(api.get(SECRET, "shop", "shardmesh-gossip-key").is_some());
    let status = api.get(SHSVC, "shop", "bank").unwrap()["status"].clone();
    assert_eq!(status["shards"], 30);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        condition(&api, "bank", "Progressing"),
        Some(("False".into(), "RolloutComplete".into()))
    );
    assert_eq!(
        condition(&api, "bank", "Degraded"),
        Some(("False".into(), "AsExpected".into()))
    );
    assert!(api.writes_to("/events") >= 1, "an Applied event");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn steady_state_makes_zero_writes() {
    let api = new_api();
    add_service(&api, "bank");
    add_service(&api, "sessions");
    let running = Running::start(api.clone());
    eventually("both Ready", || {
        is_ready(&api, "bank") && is_ready(&api, "sessions")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    api.clear_calls();
    let before = running.ctx.metrics.reconciliations.get();
    // Two resync periods: every object is reconciled again, with nothing to do.
    tokio::time::sleep(reconcile::RESYNC * 2 + Duration::from_secs(5)).await;
    let after = running.ctx.metrics.reconciliations.get();
    assert!(after >= before + 4, "resyncs happened: {before} -> {after}");
    assert_eq!(api.writes(), vec![], "steady state must not write");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn spec_change_updates_statefulset_and_rolls_checksum() {
    let api = new_api();
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    eventually("bank is Ready", || is_ready(&api, "bank")).await;
    let before = checksum(&api);
    // A field the operator does not own, set by someone else, must survive.
    assert!(api.edit(STS, "shop", "bank", |sts| {
        sts["metadata"]["annotations"]["team.example/owner"] = json!("payments");
    }));
    assert!(api.edit(SHSVC, "shop", "bank", |svc| {
        svc["spec"]["resilience"]["retries"]["attempts"] = json!(5);
        svc["spec"]["replicas"] = json!(4);
    }));
    eventually("checksum rolled", || {
        !checksum(&api).is_empty() && checksum(&api) != before
    })
    .await;
    let sts = api.get(STS, "shop", "bank").unwrap();
    assert_eq!(sts["spec"]["replicas"], 4);
    assert_eq!(
        sts["metadata"]["annotations"]["team.example/owner"],
        "payments"
    );
    let cm = api.get(CM, "shop", "bank-sidecar").unwrap();
    assert!(cm["data"]["sidecar.yaml"]
        .as_str()
        .unwrap()
        .contains("attempts: 5"));
    eventually("status observes generation 2", || {
        api.get(SHSVC, "shop", "bank").unwrap()["status"]["observedGeneration"] == 2
    })
    .await;
    assert_eq!(
        api.get(SHSVC, "shop", "bank").unwrap()["status"]["shards"],
        30,
        "shards stay fixed"
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn child_deleted_by_hand_is_recreated() {
    let api = new_api();
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    eventually("bank is Ready", || is_ready(&api, "bank")).await;
    let old_uid = api.get(STS, "shop", "bank").unwrap()["metadata"]["uid"].clone();
    api.remove(STS, "shop", "bank").expect("deleted");
    api.remove(CM, "shop", "bank-sidecar").expect("deleted");
    eventually("StatefulSet recreated", || {
        api.get(STS, "shop", "bank")
            .is_some_and(|s| s["metadata"]["uid"] != old_uid)
    })
    .await;
    eventually("ConfigMap recreated", || {
        api.get(CM, "shop", "bank-sidecar").is_some()
    })
    .await;
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn gossip_key_is_created_once_and_never_overwritten() {
    let api = new_api();
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    eventually("bank is Ready", || is_ready(&api, "bank")).await;
    // An operator rotates the key by hand; later reconciles must keep it.
    let rotated = json!("bmV3LWtleQo=");
    assert!(
        api.edit(SECRET, "shop", "shardmesh-gossip-key", |s| s["data"]
            ["keyring"] =
            rotated.clone())
    );
    add_service(&api, "sessions");
    eventually("sessions is Ready", || is_ready(&api, "sessions")).await;
    assert_eq!(
        api.get(SECRET, "shop", "shardmesh-gossip-key").unwrap()["data"]["keyring"],
        rotated
    );
    assert_eq!(api.writes_to("/secrets"), 1, "created once");
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn api_errors_back_off_without_a_hot_loop() {
    let api = new_api();
    api.inject(Fault {
        method: Some(Method::PATCH),
        path_contains: "/statefulsets/".into(),
        status: 500,
        times: usize::MAX,
    });
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let tries = api
        .calls()
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path.ends_with("/statefulsets/bank"))
        .count();
    // Backoff 1 s, 2 s, 4 s, ... : about 6 tries in a minute, not thousands.
    assert!((4..=8).contains(&tries), "{tries} tries in 60 s");
    let errors = running.ctx.metrics.errors.with_label_values(&["api"]).get();
    assert_eq!(errors as usize, tries);
    assert!(
        api.get(CM, "shop", "bank-sidecar").is_some(),
        "children before the failing one exist"
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn conflicts_are_retried_and_recover() {
    let api = new_api();
    api.inject(Fault {
        method: Some(Method::PATCH),
        path_contains: "/statefulsets/".into(),
        status: 409,
        times: 2,
    });
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    eventually("bank is Ready despite two conflicts", || {
        is_ready(&api, "bank")
    })
    .await;
    assert_eq!(
        running
            .ctx
            .metrics
            .errors
            .with_label_values(&["conflict"])
            .get(),
        2
    );
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_spec_is_reported_and_then_fixed() {
    let api = new_api();
    let mut svc = serde_json::to_value(sharded_service("shop", "bank")).unwrap();
    svc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "namespace");
    svc["spec"]["appPort"] = json!(7401);
    api.put(SHSVC, svc);
    let running = Running::start(api.clone());
    eventually("Degraded InvalidSpec", || {
        condition(&api, "bank", "Degraded") == Some(("True".into(), "InvalidSpec".into()))
    })
    .await;
    assert!(
        api.get(STS, "shop", "bank").is_none(),
        "nothing is rolled out"
    );
    let message =
        api.get(SHSVC, "shop", "bank").unwrap()["status"]["conditions"][2]["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("appPort must not be a sidecar port"),
        "{message}"
    );
    // No retry loop while the spec stays invalid.
    let tries = running.ctx.metrics.reconciliations.get();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(running.ctx.metrics.reconciliations.get() <= tries + 1);
    assert!(api.edit(SHSVC, "shop", "bank", |s| s["spec"]["appPort"] =
        json!(8080)));
    eventually("bank is Ready after the fix", || is_ready(&api, "bank")).await;
    running.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn deleting_the_service_collects_its_children() {
    let api = new_api();
    add_service(&api, "bank");
    let running = Running::start(api.clone());
    eventually("bank is Ready", || is_ready(&api, "bank")).await;
    api.remove(SHSVC, "shop", "bank");
    assert!(api.get(STS, "shop", "bank").is_none());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        api.get(STS, "shop", "bank").is_none(),
        "not recreated for a deleted owner"
    );
    assert!(
        api.get(SECRET, "shop", "shardmesh-gossip-key").is_some(),
        "the shared Secret stays"
    );
    running.shutdown().await;
}
