//! Two operator replicas against one API server: one leads, and when it
//! shuts down the standby takes over. Real time (2 s leases), because
//! kube-lease-manager reads Lease expiry from the wall clock; the test
//! polls with deadlines and takes a few seconds.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shardmesh_operator::cli::{Cli, Command, RunArgs};
use shardmesh_operator::metrics::Metrics;
use shardmesh_operator::run::operate;
use shardmesh_operator::server::Health;
use shardmesh_operator::testing::fake_api::FakeApi;
use shardmesh_operator::testing::fixtures::sharded_service;
use tokio::sync::watch;

fn args(identity: &str) -> RunArgs {
    let cli = Cli::parse_from([
        "shardmesh-operator",
        "run",
        "--identity",
        identity,
        "--lease-namespace",
        "ops",
        "--lease-seconds",
        "2",
    ]);
    match cli.command {
        Command::Run(args) => *args,
        other => panic!("{other:?}"),
    }
}

struct Replica {
    metrics: Metrics,
    health: Arc<Health>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), shardmesh_operator::Error>>,
}

fn start(api: &FakeApi, identity: &str) -> Replica {
    let metrics = Metrics::new().unwrap();
    let health = Arc::new(Health::default());
    let (stop, stopped) = watch::channel(false);
    let args = args(identity);
    let (client, m, h) = (api.client(), metrics.clone(), health.clone());
    let task =
        tokio::spawn(async move { operate(&args, args.settings(), client, m, h, stopped).await });
    Replica {
        metrics,
        health,
        stop,
        task,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after 20 s waiting until {what}");
}

fn holder(api: &FakeApi) -> Option<String> {
    let lease = api.get("coordination.k8s.io/v1/leases", "ops", "shardmesh-operator")?;
    lease["spec"]["holderIdentity"].as_str().map(String::from)
}

#[tokio::test]
async fn one_replica_leads_and_the_standby_takes_over() {
    let api = FakeApi::new();
    api.simulate_ready_statefulsets(true);
    let mut svc = serde_json::to_value(sharded_service("shop", "bank")).unwrap();
    svc["metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "name" || k == "namespace");
    api.put("shardmesh.io/v1alpha1/shardedservices", svc);

    let a = start(&api, "replica-a");
    eventually("a leads", || holder(&api).as_deref() == Some("replica-a")).await;
    let b = start(&api, "replica-b");
    eventually("both ready", || {
        a.health.ready.load(std::sync::atomic::Ordering::Relaxed)
            && b.health.ready.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    eventually("a reconciled bank", || a.metrics.reconciliations.get() > 0).await;
    // Longer than a lease: the leader renews and the standby stays idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        b.metrics.reconciliations.get(),
        0,
        "the standby does not reconcile"
    );
    assert_eq!(
        holder(&api).as_deref(),
        Some("replica-a"),
        "the leader keeps renewing"
    );

    a.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    eventually("b leads", || holder(&api).as_deref() == Some("replica-b")).await;
    eventually("b reconciles", || b.metrics.reconciliations.get() > 0).await;

    b.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), b.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
