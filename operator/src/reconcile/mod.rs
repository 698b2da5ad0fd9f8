//! Reconcile: make the children of one ShardedService match its spec with
//! server-side apply, write its status, emit Events, and back off per object
//! on errors. `reconcile` and `error_policy` are free functions over a
//! shared [`Context`] so tests can drive them against a mock API server.

pub mod apply;
mod backoff;
pub mod status;

pub use backoff::ErrorBackoff;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Patch;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use self::apply::{apply_params, Applied};
use self::status::Observed;
use crate::crd::{ShardedService, ShardedServiceStatus};
use crate::metrics::Metrics;
use crate::render::{self, Settings, FIELD_MANAGER};
use crate::Error;

/// How often a healthy object is looked at again without any watch event.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Children watches see only objects the operator made.
pub const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=shardmesh-operator";
/// Longest Event note the API accepts.
const MAX_NOTE: usize = 1024;
/// Reconciles running at once by default. Each reconcile is a short chain
/// of requests, so this bounds the operator's requests in flight: the API
/// server allocates ClusterIPs one at a time (a lock held across a write of
/// an IPAddress object), and a thousand first reconciles creating Services
/// at once queued there past its 60 s request timeout (504s, retried whole).
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Image and other operator-wide render settings.
    pub settings: Settings,
    /// Reconcile counters and durations.
    pub metrics: Metrics,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Per-object exponential backoff after errors.
    pub backoff: ErrorBackoff,
    /// Most reconciles running at once (0: unbounded).
    pub concurrency: u16,
}

impl Context {
    /// A context with the default backoff (1 s doubling to 5 min) and
    /// [`DEFAULT_CONCURRENCY`].
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            backoff: ErrorBackoff::default(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Reconciles one ShardedService; records metrics and a Warning Event on failure.
/// A namespace being deleted refuses new objects (403 NamespaceTerminating):
/// that is the end of the service, not a failure, so it is neither retried
/// nor reported (an Event could not be created there either); the deletion
/// of the ShardedService that follows ends it.
pub async fn reconcile(svc: Arc<ShardedService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match reconcile_inner(&svc, &ctx).await {
        Err(e) if e.is_namespace_terminating() => {
            tracing::debug!(service = %svc.name_any(), namespace = ?svc.namespace(), "namespace being deleted: nothing to reconcile");
            Ok(Action::await_change())
        }
        other => other,
    };
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().map(|_| ()));
    match &result {
        Ok(_) => ctx.backoff.reset(&ObjectRef::from_obj(svc.as_ref())),
        Err(e) => {
            tracing::warn!(service = %svc.name_any(), namespace = ?svc.namespace(), error = %e, "reconcile failed");
            let reason = match e {
                Error::Invalid(_) => "InvalidSpec",
                _ => "ReconcileFailed",
            };
            publish(&ctx, &svc, EventType::Warning, reason, e.to_string()).await;
        }
    }
    result
}

/// After an error: an invalid spec waits for a change; anything else is
/// retried after a per-object exponential backoff, so a failing API server
/// or a conflict never causes a hot loop.
pub fn error_policy(svc: Arc<ShardedService>, error: &Error, ctx: Arc<Context>) -> Action {
    match error {
        Error::Invalid(_) => Action::await_change(),
        _ => Action::requeue(ctx.backoff.next(&ObjectRef::from_obj(svc.as_ref()))),
    }
}

async fn reconcile_inner(svc: &ShardedService, ctx: &Context) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        // Going away (its children go with it through their owner
        // references): applying them again would only race the garbage
        // collector, and fail in a namespace being terminated.
        return Ok(Action::await_change());
    }
    let ns = svc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = svc.name_any();
    let client = ctx.client.clone();
    let services: Api<ShardedService> = Api::namespaced(client.clone(), &ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    if let Err(invalid) = crate::validate(svc, ctx.settings.trust_domain()) {
        let live = sets.get_opt(&name).await?;
        let observed = Observed {
            svc,
            shards: render::resolved_shards(svc),
            checksum: None,
            stateful_set: live.as_ref(),
            invalid: Some(&invalid),
        };
        patch_status(&services, svc, status::compute(&observed, &now)).await?;
        return Err(Error::Invalid(invalid));
    }

    let children = render::desired(svc, &ctx.settings)?;
    let mut changes = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let make = || Ok(render::gossip_secret(&ns, &random_key()?));
    if apply::create_if_absent(&secrets, render::GOSSIP_SECRET, make).await? {
        changes.push(format!("created Secret {}", render::GOSSIP_SECRET));
    }
    note(
        &mut changes,
        "ConfigMap",
        apply::apply(
            &Api::<ConfigMap>::namespaced(client.clone(), &ns),
            &children.config_map,
        )
        .await?,
    );
    if let Some(ca) = &children.ca_config_map {
        note(
            &mut changes,
            "ConfigMap",
            apply::apply(&Api::<ConfigMap>::namespaced(client.clone(), &ns), ca).await?,
        );
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    note(
        &mut changes,
        "Service",
        apply::apply(&svcs, &children.gossip_service).await?,
    );
    note(
        &mut changes,
        "Service",
        apply::apply(&svcs, &children.client_service).await?,
    );
    let sts = apply::apply(&sets, &children.stateful_set).await?;
    let live_sts = sts.object().clone();
    note(&mut changes, "StatefulSet", sts);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    match &children.disruption_budget {
        Some(pdb) => note(
            &mut changes,
            "PodDisruptionBudget",
            apply::apply(&pdbs, pdb).await?,
        ),
        None => {
            let uid = svc.uid().unwrap_or_default();
            if apply::delete_owned(&pdbs, &name, &uid).await? {
                changes.push(format!("deleted PodDisruptionBudget {name} (replicas ≤ 1)"));
            }
        }
    }

    let observed = Observed {
        svc,
        shards: children.shards,
        checksum: Some(&children.config_checksum),
        stateful_set: Some(&live_sts),
        invalid: None,
    };
    patch_status(&services, svc, status::compute(&observed, &now)).await?;
    if !changes.is_empty() {
        tracing::info!(service = %name, namespace = %ns, changes = %changes.join(", "), "applied");
        publish(ctx, svc, EventType::Normal, "Applied", changes.join(", ")).await;
    }
    Ok(Action::requeue(RESYNC))
}

fn note<K: Resource<DynamicType = ()>>(changes: &mut Vec<String>, kind: &str, applied: Applied<K>) {
    let verb = match &applied {
        Applied::Created(_) => "created",
        Applied::Updated(_) => "updated",
        Applied::Unchanged(_) => return,
    };
    changes.push(format!(
        "{verb} {kind} {}",
        applied.object().meta().name.as_deref().unwrap_or("?")
    ));
}

/// Writes the status through the status subresource, only when it changed.
async fn patch_status(
    api: &Api<ShardedService>,
    svc: &ShardedService,
    status: ShardedServiceStatus,
) -> Result<bool, Error> {
    if svc.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let body = serde_json::json!({
        "apiVersion": "shardmesh.io/v1alpha1",
        "kind": "ShardedService",
        "status": status,
    });
    api.patch_status(&svc.name_any(), &apply_params(), &Patch::Apply(&body))
        .await?;
    Ok(true)
}

/// Publishes an Event about `svc`; failures are logged, never fatal.
async fn publish(
    ctx: &Context,
    svc: &ShardedService,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &svc.object_ref(&())).await {
        tracing::debug!(error = %e, "cannot publish event");
    }
}

/// A fresh 32-byte gossip key from the OS random source.
fn random_key() -> Result<[u8; 32], Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::Random(e.to_string()))?;
    Ok(key)
}

/// The controller: ShardedServices plus the children it owns (watched by label).
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<ShardedService> {
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = || watcher::Config::default().labels(CHILD_SELECTOR);
    Controller::new(
        api::<ShardedService>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, namespace), children())
    .owns(api::<ConfigMap>(&client, namespace), children())
    .owns(api::<Service>(&client, namespace), children())
    .owns(api::<PodDisruptionBudget>(&client, namespace), children())
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let config = kube::runtime::controller::Config::default().concurrency(ctx.concurrency);
    controller(ctx.client.clone(), namespace.as_deref())
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
