//! The `ShardedService` custom resource (`shardmesh.io/v1alpha1`): the one
//! object a user writes. Resilience policy and gossip tuning reuse the
//! sidecar's own config types so the CRD and the sidecar file share field names.

use k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use shardmesh_config::{GossipTuning, ResiliencePolicy, RoutingConfig};

use crate::validate::rules;

/// What a user declares: the app's pod template and how the mesh treats it.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "shardmesh.io",
    version = "v1alpha1",
    kind = "ShardedService",
    namespaced,
    shortname = "shsvc",
    category = "shardmesh",
    doc = "A sharded stateful service: a StatefulSet whose pods carry the shardmesh sidecar",
    status = "ShardedServiceStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.shards"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(rules::NAME_LEN.0).message(rules::NAME_LEN.1),
    validation = Rule::new(rules::SHARDS_RECORDED.0).message(rules::SHARDS_RECORDED.1),
)]
#[x_kube(
    validation = Rule::new(rules::REPLICAS.0).message(rules::REPLICAS.1),
    validation = Rule::new(rules::SHARDS_RANGE.0).message(rules::SHARDS_RANGE.1),
    validation = Rule::new(rules::SHARDS_FIXED.0).message(rules::SHARDS_FIXED.1),
    validation = Rule::new(rules::APP_PORT_RANGE.0).message(rules::APP_PORT_RANGE.1),
    validation = Rule::new(rules::APP_PORT_FREE.0).message(rules::APP_PORT_FREE.1),
    validation = Rule::new(rules::KEY_FROM_PATH.0).message(rules::KEY_FROM_PATH.1),
    validation = Rule::new(rules::ALLOWED_IDENTITIES.0).message(rules::ALLOWED_IDENTITIES.1),
)]
#[serde(rename_all = "camelCase")]
pub struct ShardedServiceSpec {
    /// Pods wanted. `kubectl scale` and autoscalers set it through the scale subresource.
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Fixed number of shards. Defaults to 10 × replicas (at least 10) when the
    /// service is created; it cannot change afterwards (see docs/operator.md to re-shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Port the app container listens on (HTTP/1.1); the sidecar forwards to 127.0.0.1 on it.
    #[serde(default = "default_app_port")]
    pub app_port: i32,
    /// The app's pod template; the operator adds the sidecar, labels and annotations.
    #[schemars(schema_with = "crate::crd::pod_template_schema")]
    pub template: PodTemplateSpec,
    /// How a request's shard key is found: a header, or a path template such as `/accounts/{key}`.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Deadlines, retries, circuit breaker and backpressure for calls to this service.
    #[serde(default)]
    pub resilience: ResiliencePolicy,
    /// SWIM tuning. `enabled` and `keyringFile` are set by the operator in a cluster.
    #[serde(default)]
    pub gossip: GossipTuning,
    /// Sidecar image, pull policy and resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarSpec>,
    /// The PodDisruptionBudget; none is made at one replica (it would block node drains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudgetSpec>,
    /// The StatefulSet update strategy (default: RollingUpdate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<StatefulSetUpdateStrategy>,
    /// Who may call this service over mutual TLS (when the operator runs the
    /// identity endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
}

/// Access control between mesh services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// SPIFFE ids (`spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT`)
    /// allowed to call this service; others get 403 `forbidden`. Empty allows
    /// every identity of the mesh. The service's own pods are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub allowed_identities: Vec<String>,
}

/// Overrides for the injected sidecar container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Sidecar image; defaults to the operator's `--sidecar-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory for the sidecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Sidecar log filter, e.g. `info` or `shardmesh=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Distributed tracing: the OTLP/gRPC collector the sidecars export
    /// spans to, and the sampling ratio of new traces (docs/monitoring.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<shardmesh_config::TracingConfig>,
    /// Largest request body this service's sidecars accept, from the app
    /// (outbound) and from other sidecars (inbound); larger gets 413
    /// `payload-too-large`. Default 16 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_request_body_bytes: Option<u64>,
}

/// How many pods a voluntary disruption (node drain) may take at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetSpec {
    /// Pods that may be unavailable at once (number or percentage); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// What the operator observed; written only through the status subresource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardedServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (from the StatefulSet).
    #[serde(default)]
    pub replicas: i32,
    /// Pods whose sidecar and app are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The shard count in force; fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Label selector of the pods, for the scale subresource (autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// sha256 of the sidecar config the pods should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_checksum: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_replicas() -> i32 {
    1
}

fn default_app_port() -> i32 {
    8080
}

/// The schema of the embedded pod template without its field descriptions:
/// the full PodSpec documentation would make the CRD larger than the 256 KiB
/// `kubectl apply` annotation limit, and `kubectl explain pod.spec` has it anyway.
pub fn pod_template_schema(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let schema = gen.subschema_for::<PodTemplateSpec>();
    let mut value = schema.to_value();
    strip_descriptions(&mut value);
    schemars::Schema::try_from(value).unwrap_or_else(|_| gen.subschema_for::<PodTemplateSpec>())
}

fn strip_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("description");
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// Removes `additionalProperties: false` next to `properties`: the sidecar's
/// config types deny unknown fields (schemars says so in the schema), but the
/// Kubernetes structural-schema rules forbid both keys together; the API
/// server prunes unknown fields anyway.
fn allow_structural(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties")
                && map.get("additionalProperties") == Some(&serde_json::Value::Bool(false))
            {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(allow_structural);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(allow_structural),
        _ => {}
    }
}

/// The `format` values the API server knows (k8s.io/kube-openapi's
/// `strfmt` registry plus the OpenAPI number formats); any other one makes
/// `kubectl apply` print `Warning: unrecognized format`.
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "datetime",
    "duration",
    "password",
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
];

/// Drops the formats Kubernetes does not know, such as schemars' `uint32`
/// and `uint64` for unsigned fields. Their `minimum: 0` stays; a narrow
/// unsigned type also gets its `maximum`, so the API server still refuses a
/// value the operator could not read.
fn known_formats_only(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let format = map.get("format").and_then(|f| f.as_str()).map(String::from);
            if let Some(format) = format.filter(|f| !KNOWN_FORMATS.contains(&f.as_str())) {
                map.remove("format");
                let max = match format.as_str() {
                    "uint8" => Some(u64::from(u8::MAX)),
                    "uint16" => Some(u64::from(u16::MAX)),
                    "uint32" => Some(u64::from(u32::MAX)),
                    _ => None,
                };
                if let Some(max) = max.filter(|_| !map.contains_key("maximum")) {
                    map.insert("maximum".into(), max.into());
                }
            }
            map.values_mut().for_each(known_formats_only);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(known_formats_only),
        _ => {}
    }
}

/// The CustomResourceDefinition to install, made structural for the API
/// server and free of formats it would warn about.
pub fn crd() -> Result<CustomResourceDefinition, serde_json::Error> {
    let mut value = serde_json::to_value(ShardedService::crd())?;
    allow_structural(&mut value);
    known_formats_only(&mut value);
    serde_json::from_value(value)
}

/// The CRD as YAML: what `shardmesh-operator crd` prints and `crds/shardedservice.yaml` holds.
pub fn crd_yaml() -> Result<String, crate::Error> {
    let crd = crd().map_err(|e| crate::Error::Render(e.to_string()))?;
    let body = serde_saphyr::to_string(&crd).map_err(|e| crate::Error::Render(e.to_string()))?;
    Ok(format!(
        "# Generated by `shardmesh-operator crd`; do not edit (a test fails when stale).\n{body}"
    ))
}

#[cfg(test)]
mod tests;
