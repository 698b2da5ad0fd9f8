//! Spec validation. The CEL rules on the CRD and [`validate`] carry the same
//! messages: the API server rejects what it can check, and the operator
//! reports the rest (and everything, when an old CRD without the rules is
//! installed) in status instead of crashing.

use std::fmt;

use shardmesh_config::validate::MAX_SHARDS;

use crate::crd::ShardedService;
use crate::render::{self, MeshInputs, SIDECAR_CONTAINER, SIDECAR_PORTS};

/// The CEL rules as `(rule, message)` pairs; the CRD derive and the tests read them here.
pub mod rules {
    /// Rule on the whole object.
    pub const NAME_LEN: (&str, &str) = (
        "size(self.metadata.name) <= 52",
        "metadata.name must be at most 52 characters (the StatefulSet adds pod ordinals and revision labels)",
    );
    /// Rules on `spec`.
    pub const REPLICAS: (&str, &str) = ("self.replicas >= 0", "replicas must be at least 0");
    /// Shards must fit the sidecar's tables.
    pub const SHARDS_RANGE: (&str, &str) = (
        "!has(self.shards) || (self.shards >= 1 && self.shards <= 65536)",
        "shards must be between 1 and 65536",
    );
    /// Transition rule: key → shard mapping is fixed for the life of a service.
    pub const SHARDS_FIXED: (&str, &str) = (
        "!has(oldSelf.shards) || (has(self.shards) && self.shards == oldSelf.shards)",
        "shards cannot change after creation; create a new ShardedService to re-shard (see docs/operator.md)",
    );
    /// Rule on the whole object (it needs `status`): a shard count written
    /// into the spec after creation must equal the one the operator recorded
    /// in `status.shards`, so an object created without `spec.shards` cannot
    /// be re-sharded by adding the field later. An unchanged `spec.shards`
    /// passes, so the operator's own status writes are never refused.
    pub const SHARDS_RECORDED: (&str, &str) = (
        "!has(oldSelf.status) || !has(oldSelf.status.shards) || !has(self.spec.shards) || self.spec.shards == oldSelf.status.shards || (has(oldSelf.spec.shards) && self.spec.shards == oldSelf.spec.shards)",
        SHARDS_FIXED.1,
    );
    /// App port range.
    pub const APP_PORT_RANGE: (&str, &str) = (
        "self.appPort >= 1 && self.appPort <= 65535",
        "appPort must be between 1 and 65535",
    );
    /// The sidecar shares the pod's network namespace.
    pub const APP_PORT_FREE: (&str, &str) = (
        "!(self.appPort in [7400, 7401, 7402, 7946])",
        "appPort must not be a sidecar port (7400, 7401, 7402, 7946)",
    );
    /// A cheap shape check; the operator also parses the template fully.
    pub const KEY_FROM_PATH: (&str, &str) = (
        "!has(self.routing) || !has(self.routing.keyFromPath) || (self.routing.keyFromPath.startsWith('/') && self.routing.keyFromPath.contains('{key}'))",
        "routing.keyFromPath must start with '/' and contain a '{key}' segment",
    );
    /// Allowed client identities are SPIFFE ids.
    pub const ALLOWED_IDENTITIES: (&str, &str) = (
        "!has(self.security) || !has(self.security.allowedIdentities) || self.security.allowedIdentities.all(id, id.startsWith('spiffe://'))",
        "security.allowedIdentities must each start with 'spiffe://'",
    );
}

/// Why a spec cannot be reconciled: every problem found, each a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<String>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for InvalidSpec {}

/// Checks a ShardedService with the CEL rules' messages, plus what CEL cannot
/// express: the full path-template grammar, the sidecar's own config checks,
/// reserved container names, and the shard count against the one in force.
/// `trust_domain` is the mesh's (`--trust-domain`): `allowedIdentities` must
/// name identities in it.
pub fn validate(svc: &ShardedService, trust_domain: &str) -> Result<(), InvalidSpec> {
    let mut errs = Vec::new();
    let spec = &svc.spec;
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    if name.len() > 52 {
        errs.push(rules::NAME_LEN.1.to_string());
    }
    if spec.replicas < 0 {
        errs.push(rules::REPLICAS.1.to_string());
    }
    if let Some(shards) = spec.shards {
        if shards == 0 || shards > MAX_SHARDS {
            errs.push(rules::SHARDS_RANGE.1.to_string());
        }
    }
    let in_force = svc.status.as_ref().and_then(|s| s.shards);
    if let (Some(old), Some(new)) = (in_force, spec.shards) {
        if old != new {
            errs.push(rules::SHARDS_FIXED.1.to_string());
        }
    }
    if !(1..=65535).contains(&spec.app_port) {
        errs.push(rules::APP_PORT_RANGE.1.to_string());
    } else if SIDECAR_PORTS.contains(&spec.app_port) {
        errs.push(rules::APP_PORT_FREE.1.to_string());
    }
    if let Some(t) = &spec.routing.key_from_path {
        if !(t.starts_with('/') && t.contains("{key}")) {
            errs.push(rules::KEY_FROM_PATH.1.to_string());
        }
    }
    let identities = spec.security.iter().flat_map(|s| &s.allowed_identities);
    if identities.clone().any(|id| !id.starts_with("spiffe://")) {
        errs.push(rules::ALLOWED_IDENTITIES.1.to_string());
    }
    if identities.count() > shardmesh_config::tls::MAX_ALLOWED_IDENTITIES {
        errs.push(format!(
            "security.allowedIdentities must list at most {} identities",
            shardmesh_config::tls::MAX_ALLOWED_IDENTITIES
        ));
    }
    check_template(svc, &mut errs);
    if errs.is_empty() {
        check_sidecar_config(svc, trust_domain, &mut errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(InvalidSpec(errs))
    }
}

fn check_template(svc: &ShardedService, errs: &mut Vec<String>) {
    let Some(pod) = svc.spec.template.spec.as_ref() else {
        errs.push("template.spec must name at least one container (the app)".into());
        return;
    };
    if pod.containers.is_empty() {
        errs.push("template.spec must name at least one container (the app)".into());
    }
    let init = pod.init_containers.iter().flatten();
    if pod
        .containers
        .iter()
        .chain(init)
        .any(|c| c.name == SIDECAR_CONTAINER)
    {
        errs.push(format!(
            "container name {SIDECAR_CONTAINER:?} is reserved for the injected sidecar"
        ));
    }
}

/// Runs the sidecar's own validator on the config the operator would render,
/// so a policy the sidecar would refuse at start is refused here first.
fn check_sidecar_config(svc: &ShardedService, trust_domain: &str, errs: &mut Vec<String>) {
    let shards = render::resolved_shards(svc);
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    // A stand-in endpoint, so the sidecar's checks of `tls.allowedIdentities` run too.
    let tls = render::MeshTls {
        trust_domain: trust_domain.into(),
        issuer_url: "https://identity.invalid:8443".into(),
        audience: "shardmesh".into(),
        ca_pem: String::new(),
    };
    let inputs = MeshInputs::cluster(namespace, shards).with_tls(Some(&tls));
    let mut config = render::render_sidecar_config(svc, &inputs);
    // Per-pod facts arrive from the downward API; stand-ins keep the validator quiet about them.
    config.pod.name = "pod-0".into();
    if config.pod.service.is_empty() {
        config.pod.service = "service".into();
    }
    for e in shardmesh_config::validate::validate(&config) {
        if e.field.starts_with("pod.") {
            continue;
        }
        let field = e
            .field
            .strip_prefix("services[0].")
            .map(String::from)
            .or_else(|| e.field.strip_prefix("membership.").map(String::from))
            .or_else(|| {
                e.field
                    .strip_prefix("tls.")
                    .map(|f| format!("security.{f}"))
            })
            .unwrap_or(e.field);
        errs.push(format!("{field}: {}", e.message));
    }
}

#[cfg(test)]
mod tests;
