//! Desired state: pure functions from a `ShardedService` to the objects its
//! pods need. No I/O here, so every rule is unit-tested without an API server.

mod config;
mod pod;
mod services;

pub use config::{render_sidecar_config, MeshInputs, CA_FILE, TOKEN_FILE};
pub use pod::stateful_set;
pub use services::{
    ca_config_map, client_service, disruption_budget, gossip_secret, gossip_service,
};

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::ShardedService;
use crate::Error;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "shardmesh-operator";
/// Namespace-wide headless Service whose DNS name seeds gossip.
pub const GOSSIP_SERVICE: &str = "shardmesh-gossip";
/// Namespace-wide Secret with the gossip keyring.
pub const GOSSIP_SECRET: &str = "shardmesh-gossip-key";
/// Key of the keyring file in [`GOSSIP_SECRET`].
pub const GOSSIP_SECRET_KEY: &str = "keyring";
/// Name of the injected sidecar container.
pub const SIDECAR_CONTAINER: &str = "shardmesh-sidecar";
/// Ports the sidecar listens on inside the pod: outbound, inbound, admin, gossip.
pub const SIDECAR_PORTS: [i32; 4] = [7400, 7401, 7402, 7946];
/// Marks every mesh pod; the gossip Service selects it.
pub const LABEL_MESH: &str = "shardmesh.io/mesh";
/// The ShardedService a pod or child belongs to.
pub const LABEL_SERVICE: &str = "shardmesh.io/service";
/// Pod-template annotation with the sidecar config's sha256: a change rolls the pods.
pub const ANNOTATION_CHECKSUM: &str = "shardmesh.io/config-checksum";
/// Child annotation with the sha256 of what was last applied: equal means no write is needed.
pub const ANNOTATION_APPLIED: &str = "shardmesh.io/applied-hash";
/// Key of the sidecar config file in the ConfigMap.
pub const CONFIG_FILE: &str = "sidecar.yaml";

/// Namespace-wide ConfigMap with the mesh CA's public certificate (the trust
/// anchor every sidecar verifies peers and the identity endpoint with).
pub const CA_CONFIG_MAP: &str = "shardmesh-ca";
/// Key of the CA certificate in [`CA_CONFIG_MAP`].
pub const CA_CONFIG_MAP_KEY: &str = "ca.crt";

/// Operator-wide settings that shape the children (flags of `shardmesh-operator run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Sidecar image when the spec names none.
    pub sidecar_image: String,
    /// Mutual TLS for the pods; `None` renders plaintext h2c sidecars (the
    /// identity endpoint is off, so no pod could obtain a certificate).
    pub mesh_tls: Option<MeshTls>,
    /// The OTLP/gRPC collector of every sidecar whose spec sets no
    /// `spec.sidecar.tracing` (`run --tracing-endpoint`; docs/monitoring.md).
    pub tracing_endpoint: Option<String>,
    /// Their sampling ratio of new traces (`run --tracing-sampling-ratio`).
    pub tracing_sampling_ratio: Option<String>,
}

/// Trust domain of mesh identities unless `--trust-domain` says otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

impl Settings {
    /// The mesh's trust domain, which `allowedIdentities` must name
    /// (the default one while mutual TLS is off).
    pub fn trust_domain(&self) -> &str {
        self.mesh_tls
            .as_ref()
            .map_or(DEFAULT_TRUST_DOMAIN, |t| t.trust_domain.as_str())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sidecar_image: format!("ghcr.io/shardmesh/sidecar:{}", env!("CARGO_PKG_VERSION")),
            mesh_tls: None,
            tracing_endpoint: None,
            tracing_sampling_ratio: None,
        }
    }
}

/// What the pods need to obtain certificates from the operator's identity
/// endpoint: where it is, the token audience it checks, and the trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshTls {
    /// Trust domain of mesh identities.
    pub trust_domain: String,
    /// `https://` base URL of the identity endpoint (its Service).
    pub issuer_url: String,
    /// Audience of the projected ServiceAccount token (the endpoint's TokenReview asks for it).
    pub audience: String,
    /// PEM of the CA certificate, delivered to each namespace as [`CA_CONFIG_MAP`].
    pub ca_pem: String,
}

/// Everything one ShardedService owns, as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The sidecar config file.
    pub config_map: ConfigMap,
    /// The pods: app + native sidecar.
    pub stateful_set: StatefulSet,
    /// Stable address for clients outside the mesh.
    pub client_service: Service,
    /// Namespace-wide gossip seeds (shared by every ShardedService in the namespace).
    pub gossip_service: Service,
    /// None when replicas ≤ 1.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// The namespace's trust anchor ConfigMap; `None` without mesh TLS.
    pub ca_config_map: Option<ConfigMap>,
    /// The shard count in force.
    pub shards: u32,
    /// sha256 of the rendered sidecar config.
    pub config_checksum: String,
}

/// The shard count in force: the one recorded in status at the first
/// reconcile, else the spec's, else 10 × replicas (at least 10).
///
/// The recorded count wins over the spec so that a later edit of
/// `spec.shards` can never reach the pods: [`crate::validate`] reports the
/// mismatch, and the status written for it keeps the recorded count.
pub fn resolved_shards(svc: &ShardedService) -> u32 {
    svc.status
        .as_ref()
        .and_then(|s| s.shards)
        .or(svc.spec.shards)
        .unwrap_or_else(|| 10 * u32::try_from(svc.spec.replicas.max(1)).unwrap_or(1))
}

/// Computes every child of `svc`. Fails only on objects the API server would
/// not have stored (no name, namespace or uid) or an unrenderable config.
pub fn desired(svc: &ShardedService, settings: &Settings) -> Result<Children, Error> {
    let namespace = svc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let shards = resolved_shards(svc);
    let inputs = MeshInputs::cluster(&namespace, shards).with_tls(settings.mesh_tls.as_ref());
    let config = render_sidecar_config(svc, &inputs);
    let yaml = config.to_yaml().map_err(|e| Error::Render(e.to_string()))?;
    let config_checksum = sha256_hex(yaml.as_bytes());
    let config_map = ConfigMap {
        metadata: child_meta(svc, &config_map_name(&svc.name_any()))?,
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), yaml)])),
        ..ConfigMap::default()
    };
    Ok(Children {
        config_map,
        stateful_set: stateful_set(svc, settings, &config_checksum)?,
        client_service: client_service(svc)?,
        gossip_service: gossip_service(&namespace),
        ca_config_map: settings
            .mesh_tls
            .as_ref()
            .map(|tls| ca_config_map(&namespace, &tls.ca_pem)),
        disruption_budget: disruption_budget(svc)?,
        shards,
        config_checksum,
    })
}

/// Name of the ConfigMap with the sidecar config of service `name`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-sidecar")
}

/// Labels on every child of `name`.
pub fn child_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
        (LABEL_SERVICE.to_string(), name.to_string()),
    ])
}

/// Selector of the pods of service `name`.
pub fn pod_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_SERVICE.to_string(), name.to_string())])
}

/// The selector as a string, for the scale subresource.
pub fn selector_string(name: &str) -> String {
    format!("{LABEL_SERVICE}={name}")
}

/// Metadata of a child named `name` owned (with garbage collection) by `svc`.
pub fn child_meta(svc: &ShardedService, name: &str) -> Result<ObjectMeta, Error> {
    Ok(ObjectMeta {
        name: Some(name.to_string()),
        namespace: svc.namespace(),
        labels: Some(child_labels(&svc.name_any())),
        owner_references: Some(vec![owner_ref(svc)?]),
        ..ObjectMeta::default()
    })
}

/// The controller owner reference to `svc`.
pub fn owner_ref(svc: &ShardedService) -> Result<OwnerReference, Error> {
    let mut owner = svc
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
