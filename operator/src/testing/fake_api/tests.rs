use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;

use super::*;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "labels": {"team": "a"}},
        "data": {"k": value},
    }))
    .unwrap()
}

#[test]
fn parses_core_group_and_subresource_paths() {
    let r = parse("/api/v1/namespaces/ns/configmaps/x").unwrap();
    assert_eq!(
        (
            r.collection.as_str(),
            r.namespace.as_deref(),
            r.name.as_deref()
        ),
        ("v1/configmaps", Some("ns"), Some("x"))
    );
    let r = parse("/apis/shardmesh.io/v1alpha1/namespaces/ns/shardedservices/bank/status").unwrap();
    assert_eq!(
        (r.collection.as_str(), r.sub.as_deref()),
        ("shardmesh.io/v1alpha1/shardedservices", Some("status"))
    );
    let r = parse("/apis/apps/v1/statefulsets").unwrap();
    assert_eq!(
        (r.collection.as_str(), r.namespace),
        ("apps/v1/statefulsets", None)
    );
    assert!(parse("/healthz").is_none());
}

#[tokio::test]
async fn create_get_conflict_and_apply() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns");
    let created = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    let again = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap_err();
    assert!(matches!(again, kube::Error::Api(s) if s.code == 409));
    // A stale resourceVersion precondition is a conflict.
    let mut stale = config_map("a", "2");
    stale.metadata.resource_version = Some("0".into());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let applied = api
        .patch(
            "a",
            &PatchParams::apply("t"),
            &Patch::Apply(config_map("a", "3")),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "3");
    assert_eq!(applied.metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(fake.writes().len(), 4);
    assert!(api.get_opt("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn watch_resumes_from_a_version_and_filters_labels() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns");
    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    let mut other = config_map("b", "1");
    other.metadata.labels = None;
    api.create(&PostParams::default(), &other).await.unwrap();
    let params = WatchParams::default().labels("team=a");
    let mut events = api.watch(&params, "0").await.unwrap().boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    fake.remove("v1/configmaps", "ns", "a");
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn faults_fail_the_matching_requests_only() {
    let fake = FakeApi::new();
    fake.inject(Fault {
        method: Some(Method::POST),
        path_contains: "/configmaps".into(),
        status: 500,
        times: 1,
    });
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns");
    let err = api
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
    api.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
}
