//! Exact API call sequences of `reconcile`, against kube-rs's tower-test mock
//! (the `ApiServerVerifier` pattern of kube-rs/controller-rs).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::Client;
use serde_json::{json, Value};

use super::*;
use crate::render::{Settings, ANNOTATION_APPLIED};
use crate::testing::fixtures::sharded_service;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Metrics::new().unwrap();
    let mut ctx = Context::new(client, Settings::default(), metrics, Some("test".into()));
    ctx.backoff = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(8));
    (Arc::new(ctx), handle)
}

fn not_found() -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "message": "not found", "code": 404});
    Response::builder()
        .status(404)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn error(code: u16) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "InternalError", "message": "etcd is down", "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(value: &Value) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

/// One scripted API call: what must arrive, and what it gets back.
struct Verifier {
    handle: Handle,
    writes: Vec<(Method, String)>,
}

impl Verifier {
    /// A verifier of the requests that reach `handle`.
    fn new(handle: Handle) -> Self {
        Self {
            handle,
            writes: Vec::new(),
        }
    }

    /// Answers the read of the namespace's gossip key with an existing one.
    async fn gossip_key_exists(&mut self) {
        self.get(
            &format!("{NS}/secrets/shardmesh-gossip-key"),
            serde_json::to_value(render::gossip_secret("shop", &[1; 32])).unwrap(),
        )
        .await;
    }

    /// Waits for the next request, asserts its method and path, and returns
    /// its query and JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
    ) -> (
        String,
        Value,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(1), self.handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
                .expect("service not called");
        assert_eq!(
            (request.method(), request.uri().path()),
            (&method, path),
            "unexpected call"
        );
        let query = request.uri().query().unwrap_or_default().to_string();
        if method != Method::GET {
            self.writes.push((method.clone(), path.to_string()));
        }
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (query, body, send)
    }

    async fn get_missing(&mut self, path: &str) {
        let (_, _, send) = self.expect(Method::GET, path).await;
        send.send_response(not_found());
    }

    async fn get(&mut self, path: &str, value: Value) {
        let (_, _, send) = self.expect(Method::GET, path).await;
        send.send_response(ok(&value));
    }

    /// Expects a server-side apply by our field manager and echoes the body.
    async fn apply(&mut self, path: &str) -> Value {
        let (query, body, send) = self.expect(Method::PATCH, path).await;
        assert!(query.contains("fieldManager=shardmesh-operator"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        send.send_response(ok(&body));
        body
    }

    /// Expects an Event: created, or patched as a series when it repeats.
    async fn event(&mut self) -> Value {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(1), self.handle.next_request())
                .await
                .expect("timed out waiting for an event")
                .expect("service not called");
        let path = request.uri().path().to_string();
        assert!(
            path.starts_with("/apis/events.k8s.io/v1/namespaces/shop/events"),
            "{path}"
        );
        self.writes.push((request.method().clone(), path));
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        send.send_response(ok(&body));
        body
    }

    async fn nothing_more(&mut self) {
        let next =
            tokio::time::timeout(Duration::from_millis(100), self.handle.next_request()).await;
        if let Ok(Some((request, _))) = next {
            let what = format!("{} {}", request.method(), request.uri());
            let body = request.into_body().collect_bytes().await.unwrap();
            panic!(
                "unexpected extra API call {what}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

const NS: &str = "/api/v1/namespaces/shop";
const APPS: &str = "/apis/apps/v1/namespaces/shop";
const POLICY: &str = "/apis/policy/v1/namespaces/shop";
const OURS: &str = "/apis/shardmesh.io/v1alpha1/namespaces/shop/shardedservices";

fn ready_set(desired: &StatefulSet) -> StatefulSet {
    let mut sts = desired.clone();
    sts.metadata.generation = Some(1);
    sts.status = Some(StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        updated_replicas: Some(3),
        observed_generation: Some(1),
        ..StatefulSetStatus::default()
    });
    sts
}

fn with_hash<K: serde::Serialize + kube::Resource>(mut obj: K) -> Value {
    let hash = apply::desired_hash(&obj).unwrap();
    obj.meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ANNOTATION_APPLIED.into(), hash);
    serde_json::to_value(obj).unwrap()
}

#[tokio::test]
async fn first_reconcile_creates_every_child_then_status_and_event() {
    let (ctx, handle) = context();
    let svc = Arc::new(sharded_service("shop", "bank"));
    let task = tokio::spawn(reconcile(svc.clone(), ctx.clone()));
    let mut v = Verifier::new(handle);

    v.get_missing(&format!("{NS}/secrets/shardmesh-gossip-key"))
        .await;
    let (_, secret, send) = v.expect(Method::POST, &format!("{NS}/secrets")).await;
    assert!(secret["data"]["keyring"].is_string());
    assert!(
        secret["metadata"].get("ownerReferences").is_none(),
        "the Secret outlives any one service"
    );
    send.send_response(ok(&secret));
    v.get_missing(&format!("{NS}/configmaps/bank-sidecar"))
        .await;
    let cm = v.apply(&format!("{NS}/configmaps/bank-sidecar")).await;
    assert_eq!(cm["metadata"]["ownerReferences"][0]["uid"], "uid-shop-bank");
    assert_eq!(
        cm["metadata"]["annotations"][ANNOTATION_APPLIED]
            .as_str()
            .map(str::len),
        Some(64)
    );
    v.get_missing(&format!("{NS}/services/shardmesh-gossip"))
        .await;
    v.apply(&format!("{NS}/services/shardmesh-gossip")).await;
    v.get_missing(&format!("{NS}/services/bank")).await;
    v.apply(&format!("{NS}/services/bank")).await;
    v.get_missing(&format!("{APPS}/statefulsets/bank")).await;
    let sts = v.apply(&format!("{APPS}/statefulsets/bank")).await;
    assert_eq!(
        sts["spec"]["template"]["spec"]["initContainers"][0]["restartPolicy"],
        "Always"
    );
    v.get_missing(&format!("{POLICY}/poddisruptionbudgets/bank"))
        .await;
    v.apply(&format!("{POLICY}/poddisruptionbudgets/bank"))
        .await;
    let (query, status, send) = v
        .expect(Method::PATCH, &format!("{OURS}/bank/status"))
        .await;
    assert!(query.contains("fieldManager=shardmesh-operator"));
    assert_eq!(status["status"]["shards"], 30);
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(status["status"]["selector"], "shardmesh.io/service=bank");
    assert_eq!(status["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(
        status["status"]["conditions"][0]["reason"],
        "ReplicasNotReady"
    );
    assert_eq!(status["status"]["conditions"][1]["reason"], "RollingOut");
    let mut echoed = serde_json::to_value(svc.as_ref()).unwrap();
    echoed["status"] = status["status"].clone();
    send.send_response(ok(&echoed));
    let event = v.event().await;
    assert_eq!(event["reason"], "Applied");
    assert_eq!(event["type"], "Normal");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("created StatefulSet bank") && note.contains("created Secret"),
        "{note}"
    );

    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    v.nothing_more().await;
    assert_eq!(
        v.writes.len(),
        8,
        "secret, 5 applies, status, event: {:?}",
        v.writes
    );
    assert_eq!(ctx.metrics.reconciliations.get(), 1);
}

#[tokio::test]
async fn unchanged_service_makes_zero_writes() {
    let (ctx, handle) = context();
    let mut svc = sharded_service("shop", "bank");
    let children = render::desired(&svc, &Settings::default()).unwrap();
    let sts = ready_set(&children.stateful_set);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let observed = Observed {
        svc: &svc,
        shards: children.shards,
        checksum: Some(&children.config_checksum),
        stateful_set: Some(&sts),
        invalid: None,
    };
    svc.status = Some(status::compute(&observed, &now));
    let ready = status::find(svc.status.as_ref().unwrap(), "Ready").unwrap();
    assert_eq!(ready.reason, "AllReplicasReady");
    let task = tokio::spawn(reconcile(Arc::new(svc), ctx));
    let mut v = Verifier::new(handle);

    v.gossip_key_exists().await;
    v.get(
        &format!("{NS}/configmaps/bank-sidecar"),
        with_hash(children.config_map.clone()),
    )
    .await;
    v.get(
        &format!("{NS}/services/shardmesh-gossip"),
        with_hash(children.gossip_service.clone()),
    )
    .await;
    v.get(
        &format!("{NS}/services/bank"),
        with_hash(children.client_service.clone()),
    )
    .await;
    // The live StatefulSet has a status and server defaults; the hash still matches.
    let mut live = with_hash(children.stateful_set.clone());
    let live_status = serde_json::to_value(ready_set(&children.stateful_set)).unwrap();
    live["status"] = live_status["status"].clone();
    live["metadata"]["generation"] = json!(1);
    live["spec"]["revisionHistoryLimit"] = json!(10);
    v.get(&format!("{APPS}/statefulsets/bank"), live).await;
    v.get(
        &format!("{POLICY}/poddisruptionbudgets/bank"),
        with_hash(children.disruption_budget.clone().unwrap()),
    )
    .await;

    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(RESYNC));
    v.nothing_more().await;
    assert!(v.writes.is_empty(), "{:?}", v.writes);
}

#[tokio::test]
async fn changed_spec_patches_only_what_changed() {
    let (ctx, handle) = context();
    let old = sharded_service("shop", "bank");
    let old_children = render::desired(&old, &Settings::default()).unwrap();
    let mut svc = old.clone();
    svc.spec.resilience.retries.attempts = 4;
    svc.metadata.generation = Some(2);
    let task = tokio::spawn(reconcile(Arc::new(svc), ctx));
    let mut v = Verifier::new(handle);

    v.gossip_key_exists().await;
    v.get(
        &format!("{NS}/configmaps/bank-sidecar"),
        with_hash(old_children.config_map.clone()),
    )
    .await;
    let cm = v.apply(&format!("{NS}/configmaps/bank-sidecar")).await;
    assert!(cm["data"]["sidecar.yaml"]
        .as_str()
        .unwrap()
        .contains("attempts: 4"));
    v.get(
        &format!("{NS}/services/shardmesh-gossip"),
        with_hash(old_children.gossip_service.clone()),
    )
    .await;
    v.get(
        &format!("{NS}/services/bank"),
        with_hash(old_children.client_service.clone()),
    )
    .await;
    v.get(
        &format!("{APPS}/statefulsets/bank"),
        with_hash(ready_set(&old_children.stateful_set)),
    )
    .await;
    let sts = v.apply(&format!("{APPS}/statefulsets/bank")).await;
    let old_sum = &old_children.config_checksum;
    let new_sum = sts["spec"]["template"]["metadata"]["annotations"]
        ["shardmesh.io/config-checksum"]
        .as_str()
        .unwrap();
    assert_ne!(new_sum, old_sum, "the checksum rolls the pods");
    v.get(
        &format!("{POLICY}/poddisruptionbudgets/bank"),
        with_hash(old_children.disruption_budget.clone().unwrap()),
    )
    .await;
    let (_, status, send) = v
        .expect(Method::PATCH, &format!("{OURS}/bank/status"))
        .await;
    assert_eq!(status["status"]["configChecksum"], new_sum);
    send.send_response(ok(
        &serde_json::to_value(sharded_service("shop", "bank")).unwrap()
    ));
    let event = v.event().await;
    assert_eq!(
        event["note"],
        "updated ConfigMap bank-sidecar, updated StatefulSet bank"
    );
    task.await.unwrap().unwrap();
    v.nothing_more().await;
}

#[tokio::test]
async fn scaling_to_one_deletes_the_owned_budget() {
    let (ctx, handle) = context();
    let mut svc = sharded_service("shop", "bank");
    svc.status = Some(crate::crd::ShardedServiceStatus {
        shards: Some(30),
        ..Default::default()
    });
    let three = render::desired(&svc, &Settings::default()).unwrap();
    svc.spec.replicas = 1;
    let task = tokio::spawn(reconcile(Arc::new(svc), ctx));
    let mut v = Verifier::new(handle);
    v.gossip_key_exists().await;
    v.get(
        &format!("{NS}/configmaps/bank-sidecar"),
        with_hash(three.config_map.clone()),
    )
    .await;
    v.get(
        &format!("{NS}/services/shardmesh-gossip"),
        with_hash(three.gossip_service.clone()),
    )
    .await;
    v.get(
        &format!("{NS}/services/bank"),
        with_hash(three.client_service.clone()),
    )
    .await;
    v.get(
        &format!("{APPS}/statefulsets/bank"),
        with_hash(three.stateful_set.clone()),
    )
    .await;
    v.apply(&format!("{APPS}/statefulsets/bank")).await;
    let pdb: PodDisruptionBudget = three.disruption_budget.clone().unwrap();
    v.get(
        &format!("{POLICY}/poddisruptionbudgets/bank"),
        serde_json::to_value(pdb).unwrap(),
    )
    .await;
    let (_, _, send) = v
        .expect(
            Method::DELETE,
            &format!("{POLICY}/poddisruptionbudgets/bank"),
        )
        .await;
    send.send_response(ok(
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
    ));
    let (_, _, send) = v
        .expect(Method::PATCH, &format!("{OURS}/bank/status"))
        .await;
    send.send_response(ok(
        &serde_json::to_value(sharded_service("shop", "bank")).unwrap()
    ));
    let event = v.event().await;
    assert!(event["note"]
        .as_str()
        .unwrap()
        .contains("deleted PodDisruptionBudget bank"));
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_spec_is_reported_in_status_and_waits_for_a_change() {
    let (ctx, handle) = context();
    let mut svc = sharded_service("shop", "bank");
    svc.spec.app_port = 7402;
    let svc = Arc::new(svc);
    let task = tokio::spawn(reconcile(svc.clone(), ctx.clone()));
    let mut v = Verifier::new(handle);
    v.get_missing(&format!("{APPS}/statefulsets/bank")).await;
    let (_, status, send) = v
        .expect(Method::PATCH, &format!("{OURS}/bank/status"))
        .await;
    let degraded = &status["status"]["conditions"][2];
    assert_eq!(degraded["type"], "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"]
        .as_str()
        .unwrap()
        .contains("appPort must not be a sidecar port"));
    send.send_response(ok(&serde_json::to_value(svc.as_ref()).unwrap()));
    let event = v.event().await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert_eq!(error_policy(svc, &err, ctx.clone()), Action::await_change());
    v.nothing_more().await;
    assert_eq!(
        ctx.metrics
            .errors
            .with_label_values(&["invalid-spec"])
            .get(),
        1
    );
}

#[tokio::test]
async fn api_errors_back_off_exponentially_per_object() {
    let (ctx, handle) = context();
    let svc = Arc::new(sharded_service("shop", "bank"));
    let mut v = Verifier::new(handle);
    let mut delays = Vec::new();
    for _ in 0..5 {
        let task = tokio::spawn(reconcile(svc.clone(), ctx.clone()));
        let (_, _, send) = v
            .expect(Method::GET, &format!("{NS}/secrets/shardmesh-gossip-key"))
            .await;
        send.send_response(error(500));
        let event = v.event().await;
        assert_eq!(event["reason"], "ReconcileFailed");
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.metric_label(), "api");
        delays.push(error_policy(svc.clone(), &err, ctx.clone()));
    }
    let secs = |d: u64| Action::requeue(Duration::from_secs(d));
    assert_eq!(delays, [secs(1), secs(2), secs(4), secs(8), secs(8)]);
    // Another object has its own count.
    let other = Arc::new(sharded_service("shop", "sessions"));
    assert_eq!(
        error_policy(other, &Error::MissingField("x"), ctx.clone()),
        secs(1)
    );
    assert_eq!(ctx.backoff.failures(&ObjectRef::from_obj(svc.as_ref())), 5);
    assert_eq!(ctx.metrics.errors.with_label_values(&["api"]).get(), 5);
}

/// A ShardedService being deleted (a namespace being terminated, or a
/// finalizer of someone else's holding it) makes no API call at all: its
/// children go with it through their owner references.
#[tokio::test]
async fn a_service_being_deleted_is_left_alone() {
    let (ctx, handle) = context();
    let mut svc = sharded_service("shop", "bank");
    svc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let action = reconcile(Arc::new(svc), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let mut v = Verifier::new(handle);
    v.nothing_more().await;
}

fn namespace_terminating() -> Response<Body> {
    // What the NamespaceLifecycle admission plugin answers a create in a
    // namespace being deleted (k8s.io/apiserver, admission/plugin/namespace/lifecycle).
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "Forbidden", "code": 403,
        "message": "configmaps \"bank-sidecar\" is forbidden: unable to create new content in namespace shop because it is being terminated",
        "details": {"name": "bank-sidecar", "kind": "configmaps", "causes": [{
            "reason": "NamespaceTerminating",
            "message": "namespace shop is being terminated",
            "field": "metadata.namespace"}]}});
    Response::builder()
        .status(403)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// The namespace controller deletes a service's children before the
/// ShardedService itself; the reconcile their deletion triggers must not
/// recreate them (403), report a failure, publish an Event or back off
/// and retry: it stops at the first refusal and waits for a change.
#[tokio::test]
async fn a_namespace_being_deleted_stops_the_reconcile_without_retry() {
    let (ctx, handle) = context();
    let svc = Arc::new(sharded_service("shop", "bank"));
    let task = tokio::spawn(reconcile(svc.clone(), ctx.clone()));
    let mut v = Verifier::new(handle);
    v.gossip_key_exists().await;
    v.get_missing(&format!("{NS}/configmaps/bank-sidecar"))
        .await;
    let (_, _, send) = v
        .expect(Method::PATCH, &format!("{NS}/configmaps/bank-sidecar"))
        .await;
    send.send_response(namespace_terminating());

    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    v.nothing_more().await; // no Event, no further child
    assert_eq!(ctx.backoff.failures(&ObjectRef::from_obj(svc.as_ref())), 0);
    assert_eq!(ctx.metrics.errors.with_label_values(&["api"]).get(), 0);
}

/// Any other 403 (say, RBAC missing a verb) is a real failure: reported and retried.
#[tokio::test]
async fn a_plain_forbidden_is_still_a_failure() {
    let (ctx, handle) = context();
    let svc = Arc::new(sharded_service("shop", "bank"));
    let task = tokio::spawn(reconcile(svc.clone(), ctx.clone()));
    let mut v = Verifier::new(handle);
    let (_, _, send) = v
        .expect(Method::GET, &format!("{NS}/secrets/shardmesh-gossip-key"))
        .await;
    send.send_response(error(403));
    assert_eq!(v.event().await["reason"], "ReconcileFailed");
    let err = task.await.unwrap().unwrap_err();
    assert!(!err.is_namespace_terminating());
    assert_eq!(
        error_policy(svc, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
}
