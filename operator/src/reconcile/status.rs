//! Status and conditions: `Ready`, `Progressing`, `Degraded`, each with a
//! reason and a message a person can act on.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{ShardedService, ShardedServiceStatus};
use crate::render::selector_string;
use crate::validate::InvalidSpec;

/// What the status is computed from.
pub struct Observed<'a> {
    /// The ShardedService.
    pub svc: &'a ShardedService,
    /// The shard count in force.
    pub shards: u32,
    /// The sidecar config checksum, when the spec rendered.
    pub checksum: Option<&'a str>,
    /// The live StatefulSet, if any.
    pub stateful_set: Option<&'a StatefulSet>,
    /// Why the spec was refused, if it was.
    pub invalid: Option<&'a InvalidSpec>,
}

/// Computes the status; `now` stamps conditions whose status changed
/// (unchanged ones keep their old transition time, so a steady state
/// computes an equal status and writes nothing).
pub fn compute(o: &Observed<'_>, now: &Time) -> ShardedServiceStatus {
    let old = o.svc.status.clone().unwrap_or_default();
    let name = o.svc.metadata.name.clone().unwrap_or_default();
    let want = o.svc.spec.replicas;
    let sts = o.stateful_set.and_then(|s| s.status.as_ref());
    let replicas = sts.map(|s| s.replicas).unwrap_or(0);
    let ready = sts.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts.and_then(|s| s.updated_replicas).unwrap_or(0);
    let sts_generation = o.stateful_set.and_then(|s| s.metadata.generation);
    let sts_observed = sts.and_then(|s| s.observed_generation);
    let rolled = sts_generation.is_some() && sts_observed >= sts_generation && updated >= want;

    let (ready_c, progressing, degraded) = if let Some(invalid) = o.invalid {
        (
            (
                "False",
                "InvalidSpec",
                "the spec is invalid; see the Degraded condition".to_string(),
            ),
            (
                "False",
                "InvalidSpec",
                "nothing is rolled out until the spec is fixed".to_string(),
            ),
            (
                "True",
                "InvalidSpec",
                format!("fix the ShardedService spec: {invalid}"),
            ),
        )
    } else {
        let ready_c = if want == 0 {
            ("True", "ScaledToZero", "replicas is 0".to_string())
        } else if ready >= want && rolled {
            (
                "True",
                "AllReplicasReady",
                format!("{ready}/{want} pods ready"),
            )
        } else {
            (
                "False",
                "ReplicasNotReady",
                format!(
                    "{ready}/{want} pods ready; `kubectl describe pods -l {}` shows why",
                    selector_string(&name)
                ),
            )
        };
        let progressing = if rolled {
            (
                "False",
                "RolloutComplete",
                format!("{updated}/{want} pods run the current revision"),
            )
        } else {
            (
                "True",
                "RollingOut",
                format!("{updated}/{want} pods run the current revision"),
            )
        };
        let degraded = if rolled && ready < want {
            (
                "True",
                "PodsUnavailable",
                format!("{} of {want} pods are not ready after the rollout finished; check the sidecar's /ready and the app's logs", want - ready),
            )
        } else {
            ("False", "AsExpected", "no problem detected".to_string())
        };
        (ready_c, progressing, degraded)
    };
    let generation = o.svc.metadata.generation;
    let conditions = [
        ("Ready", ready_c),
        ("Progressing", progressing),
        ("Degraded", degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        condition(
            &old.conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        )
    })
    .collect();
    ShardedServiceStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: ready,
        shards: Some(o.shards),
        selector: Some(selector_string(&name)),
        config_checksum: o.checksum.map(String::from).or(old.config_checksum),
        conditions,
    }
}

fn condition(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The condition `type_` of `status`, if present.
pub fn find<'a>(status: &'a ShardedServiceStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests;
