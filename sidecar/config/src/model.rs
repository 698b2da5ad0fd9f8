//! The configuration types. Field names are camelCase so that the same names
//! appear in the sidecar's YAML file and in the `ShardedService` custom resource.

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// The whole sidecar configuration: one YAML file, passed with `--config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarConfig {
    /// Who this sidecar is. In a cluster the name comes from the environment
    /// (`SHARDMESH_POD_NAME`) because one ConfigMap serves every pod.
    #[serde(default)]
    pub pod: PodConfig,
    /// Listen addresses of the four listeners.
    #[serde(default)]
    pub listeners: ListenerConfig,
    /// Where the local application listens.
    #[serde(default)]
    pub app: AppConfig,
    /// Every service this sidecar can route to (its own included).
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// How members find each other and detect failures.
    #[serde(default)]
    pub membership: MembershipConfig,
    /// Protection of the listeners against slow or oversized input.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
    /// Mutual TLS between sidecars; absent means plaintext h2c.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// How long a SIGTERM waits for in-flight requests before exiting.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Distributed tracing (W3C trace context, spans exported over OTLP);
    /// absent means no spans are made (trace headers still pass through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
}

/// Distributed tracing: a span per hop, exported over OTLP/gRPC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC address, e.g. `http://otel-collector:4317`
    /// (`SHARDMESH_TRACING_ENDPOINT`).
    pub endpoint: String,
    /// Share of requests arriving without a sampled `traceparent` that
    /// start a sampled trace, 0.0–1.0 (`SHARDMESH_TRACING_SAMPLING_RATIO`).
    /// A caller's sampling decision is always followed.
    #[serde(default = "defaults::tracing_sampling_ratio")]
    pub sampling_ratio: f64,
    /// Finished spans waiting for export; beyond it spans are dropped (and
    /// counted in `shardmesh_trace_spans_dropped_total`), never waited for.
    #[serde(default = "defaults::tracing_queue_size")]
    pub queue_size: u32,
    /// Spans per export request.
    #[serde(default = "defaults::tracing_batch_size")]
    pub batch_size: u32,
}

/// The identity of the pod this sidecar runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodConfig {
    /// Pod name, unique in the mesh (`SHARDMESH_POD_NAME`).
    #[serde(default)]
    pub name: String,
    /// The ShardedService this pod belongs to (`SHARDMESH_SERVICE`).
    #[serde(default)]
    pub service: String,
    /// Failure domain, used to spread load and shards (`SHARDMESH_ZONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Host other sidecars use to reach this pod (`SHARDMESH_ADVERTISE_HOST`,
    /// usually the pod IP). Defaults to the inbound listener's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_host: Option<String>,
    /// IP of the node the pod runs on (`SHARDMESH_HOST_IP`, the downward
    /// API's `status.hostIP`): the kubelet calls the admin `/drain` endpoint
    /// from there when it runs the app's preStop hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// Listen addresses (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerConfig {
    /// The app calls other services through this listener (loopback only by default).
    #[serde(default = "defaults::outbound")]
    pub outbound: String,
    /// Other sidecars call this pod through this listener.
    #[serde(default = "defaults::inbound")]
    pub inbound: String,
    /// `/metrics`, `/live`, `/ready`, `/debug/*`.
    #[serde(default = "defaults::admin")]
    pub admin: String,
    /// Gossip: UDP probes and TCP push-pull.
    #[serde(default = "defaults::gossip")]
    pub gossip: String,
}

/// The local application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    /// `host:port` of the app's HTTP/1.1 listener.
    #[serde(default = "defaults::app_address")]
    pub address: String,
}

/// One service in the mesh view and the policy used to reach it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name, as used in `x-shardmesh-service` and `NAME.shardmesh`.
    pub name: String,
    /// Number of shards; fixed for the life of the service.
    pub shards: u32,
    /// How a request's shard key is found.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Deadlines, retries, breakers and backpressure for this service.
    #[serde(default)]
    pub resilience: ResiliencePolicy,
    /// Static members (local mode and tests). Empty when gossip discovers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<StaticMember>,
}

/// How a request's shard key is extracted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingConfig {
    /// Header that carries the key.
    #[serde(default = "defaults::key_header")]
    pub key_header: String,
    /// Path template with one `{key}` segment, e.g. `/accounts/{key}`; the
    /// template matches that path and anything below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_from_path: Option<String>,
}

/// A member given in the config file instead of discovered by gossip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticMember {
    /// Pod name.
    pub name: String,
    /// `host:port` of the member's inbound listener.
    pub inbound: String,
    /// `host:port` of the member's admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// Failure domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Shards this member owns. When no member lists shards, ownership is
    /// computed from the member list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<u32>>,
}

/// Resilience policy of one service. Defaults are those of DESIGN.md.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResiliencePolicy {
    /// Request deadline and per-try timeout.
    #[serde(default)]
    pub timeouts: TimeoutPolicy,
    /// Retries, backoff and the retry budget.
    #[serde(default)]
    pub retries: RetryPolicy,
    /// The per-peer circuit breaker.
    #[serde(default)]
    pub breaker: BreakerPolicy,
    /// Inbound concurrency limit and queue in front of the app.
    #[serde(default)]
    pub backpressure: BackpressurePolicy,
    /// Outbound pending limit for calls to this service.
    #[serde(default)]
    pub bulkhead: BulkheadPolicy,
}

/// Deadlines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutPolicy {
    /// Default request deadline when the caller sends no `x-shardmesh-timeout-ms`.
    #[serde(default = "defaults::request_ms")]
    pub request_ms: u64,
    /// Timeout of one try; defaults to the remaining deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_ms: Option<u64>,
}

/// Retries with exponential backoff and full jitter, capped by a budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total tries including the first (1 disables retries).
    #[serde(default = "defaults::attempts")]
    pub attempts: u32,
    /// First backoff ceiling.
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Retries allowed as a percentage of requests in the budget window.
    #[serde(default = "defaults::budget_percent")]
    pub budget_percent: u32,
    /// Retries always allowed per second on top of the percentage.
    #[serde(default = "defaults::budget_min_per_second")]
    pub budget_min_per_second: u32,
    /// Length of the budget window.
    #[serde(default = "defaults::budget_window_seconds")]
    pub budget_window_seconds: u32,
    /// Request bodies up to this size are buffered so they can be replayed;
    /// larger bodies stream and are not retried.
    #[serde(default = "defaults::max_replay_body_bytes")]
    pub max_replay_body_bytes: u64,
}

/// Circuit breaker per destination pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Opens after this many failures in a row.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// Opens when the failure percentage in the window reaches this...
    #[serde(default = "defaults::failure_percent")]
    pub failure_percent: u32,
    /// ...over at least this many requests.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u32,
    /// Length of the failure-ratio window.
    #[serde(default = "defaults::window_seconds")]
    pub window_seconds: u32,
    /// First open period; doubles on each failed probe.
    #[serde(default = "defaults::open_ms")]
    pub open_ms: u64,
    /// Longest open period.
    #[serde(default = "defaults::max_open_ms")]
    pub max_open_ms: u64,
}

/// Inbound backpressure in front of the local app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackpressurePolicy {
    /// Requests allowed at the app at once.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: u32,
    /// Requests allowed to wait for a slot.
    #[serde(default = "defaults::queue_size")]
    pub queue_size: u32,
    /// Longest wait for a slot before `overloaded`.
    #[serde(default = "defaults::max_queue_wait_ms")]
    pub max_queue_wait_ms: u64,
}

/// Outbound bulkhead: pending requests to one destination service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkheadPolicy {
    /// Requests to this service in flight from this sidecar at once; beyond
    /// that the caller gets `overloaded` at once.
    #[serde(default = "defaults::max_pending")]
    pub max_pending: u32,
}

/// Membership: seeds and gossip tuning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MembershipConfig {
    /// Where to find other members.
    #[serde(default)]
    pub seeds: SeedConfig,
    /// SWIM/Lifeguard parameters.
    #[serde(default)]
    pub gossip: GossipTuning,
}

/// Gossip seeds: a DNS name (the headless `shardmesh-gossip` Service) or a list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedConfig {
    /// `name:port` re-resolved until joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// Static `host:port` gossip addresses (`SHARDMESH_SEEDS`, comma separated).
    #[serde(default, rename = "static", skip_serializing_if = "Vec::is_empty")]
    pub static_seeds: Vec<String>,
}

/// SWIM with Lifeguard; defaults follow memberlist's LAN profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GossipTuning {
    /// Gossip on or off. Off: membership comes only from static members.
    #[serde(default)]
    pub enabled: bool,
    /// Time between probes of one member by this member.
    #[serde(default = "defaults::probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// Wait for a direct ack before indirect probes.
    #[serde(default = "defaults::probe_timeout_ms")]
    pub probe_timeout_ms: u64,
    /// Members asked to probe indirectly.
    #[serde(default = "defaults::indirect_probes")]
    pub indirect_probes: u32,
    /// Scales the suspicion timeout with log(N).
    #[serde(default = "defaults::suspicion_multiplier")]
    pub suspicion_multiplier: u32,
    /// Scales the retransmit limit λ·log(N).
    #[serde(default = "defaults::retransmit_multiplier")]
    pub retransmit_multiplier: u32,
    /// Period of full-state push-pull.
    #[serde(default = "defaults::push_pull_interval_ms")]
    pub push_pull_interval_ms: u64,
    /// File with the keyring (one base64 key per line, first is primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring_file: Option<String>,
}

/// Limits that protect the listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request head (request line + headers); larger gets 431.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: u32,
    /// Time allowed to receive a request head (slowloris).
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Open connections per listener.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Largest request body accepted on the outbound and inbound paths,
    /// counted while streaming; larger gets 413 `payload-too-large`.
    #[serde(default = "defaults::max_request_body_bytes")]
    pub max_request_body_bytes: u64,
}

/// Log format and filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (`SHARDMESH_LOG_FORMAT`).
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `shardmesh=debug` (`SHARDMESH_LOG_LEVEL`).
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Default values, named so serde and `Default` impls share them.
pub mod defaults {
    #![allow(missing_docs)]
    pub fn outbound() -> String {
        "127.0.0.1:7400".into()
    }
    pub fn inbound() -> String {
        "0.0.0.0:7401".into()
    }
    pub fn admin() -> String {
        "0.0.0.0:7402".into()
    }
    pub fn gossip() -> String {
        "0.0.0.0:7946".into()
    }
    pub fn app_address() -> String {
        "127.0.0.1:8080".into()
    }
    pub fn key_header() -> String {
        "x-shardmesh-key".into()
    }
    pub fn shutdown_grace_ms() -> u64 {
        20_000
    }
    pub fn request_ms() -> u64 {
        10_000
    }
    pub fn attempts() -> u32 {
        3
    }
    pub fn backoff_base_ms() -> u64 {
        25
    }
    pub fn backoff_max_ms() -> u64 {
        1_000
    }
    pub fn budget_percent() -> u32 {
        20
    }
    pub fn budget_min_per_second() -> u32 {
        10
    }
    pub fn budget_window_seconds() -> u32 {
        10
    }
    pub fn max_replay_body_bytes() -> u64 {
        64 * 1024
    }
    pub fn consecutive_failures() -> u32 {
        5
    }
    pub fn failure_percent() -> u32 {
        50
    }
    pub fn min_requests() -> u32 {
        20
    }
    pub fn window_seconds() -> u32 {
        10
    }
    pub fn open_ms() -> u64 {
        5_000
    }
    pub fn max_open_ms() -> u64 {
        60_000
    }
    pub fn max_concurrency() -> u32 {
        100
    }
    pub fn queue_size() -> u32 {
        100
    }
    pub fn max_queue_wait_ms() -> u64 {
        1_000
    }
    pub fn max_pending() -> u32 {
        1_000
    }
    pub fn probe_interval_ms() -> u64 {
        1_000
    }
    pub fn probe_timeout_ms() -> u64 {
        500
    }
    pub fn indirect_probes() -> u32 {
        3
    }
    pub fn suspicion_multiplier() -> u32 {
        4
    }
    pub fn retransmit_multiplier() -> u32 {
        4
    }
    pub fn push_pull_interval_ms() -> u64 {
        30_000
    }
    pub fn max_header_bytes() -> u32 {
        64 * 1024
    }
    pub fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_connections() -> u32 {
        10_000
    }
    pub fn max_request_body_bytes() -> u64 {
        16 * 1024 * 1024
    }
    pub fn tracing_sampling_ratio() -> f64 {
        0.01
    }
    pub fn tracing_queue_size() -> u32 {
        4096
    }
    pub fn tracing_batch_size() -> u32 {
        512
    }
    pub fn log_level() -> String {
        "info".into()
    }
}

// === impl Default ===

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            outbound: defaults::outbound(),
            inbound: defaults::inbound(),
            admin: defaults::admin(),
            gossip: defaults::gossip(),
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            address: defaults::app_address(),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            key_header: defaults::key_header(),
            key_from_path: None,
        }
    }
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        Self {
            request_ms: defaults::request_ms(),
            per_try_ms: None,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: defaults::attempts(),
            backoff_base_ms: defaults::backoff_base_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            budget_percent: defaults::budget_percent(),
            budget_min_per_second: defaults::budget_min_per_second(),
            budget_window_seconds: defaults::budget_window_seconds(),
            max_replay_body_bytes: defaults::max_replay_body_bytes(),
        }
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: defaults::consecutive_failures(),
            failure_percent: defaults::failure_percent(),
            min_requests: defaults::min_requests(),
            window_seconds: defaults::window_seconds(),
            open_ms: defaults::open_ms(),
            max_open_ms: defaults::max_open_ms(),
        }
    }
}

impl Default for BackpressurePolicy {
    fn default() -> Self {
        Self {
            max_concurrency: defaults::max_concurrency(),
            queue_size: defaults::queue_size(),
            max_queue_wait_ms: defaults::max_queue_wait_ms(),
        }
    }
}

impl Default for BulkheadPolicy {
    fn default() -> Self {
        Self {
            max_pending: defaults::max_pending(),
        }
    }
}

impl Default for GossipTuning {
    fn default() -> Self {
        Self {
            enabled: false,
            probe_interval_ms: defaults::probe_interval_ms(),
            probe_timeout_ms: defaults::probe_timeout_ms(),
            indirect_probes: defaults::indirect_probes(),
            suspicion_multiplier: defaults::suspicion_multiplier(),
            retransmit_multiplier: defaults::retransmit_multiplier(),
            push_pull_interval_ms: defaults::push_pull_interval_ms(),
            keyring_file: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: defaults::max_header_bytes(),
            header_read_timeout_ms: defaults::header_read_timeout_ms(),
            max_connections: defaults::max_connections(),
            max_request_body_bytes: defaults::max_request_body_bytes(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: defaults::log_level(),
        }
    }
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            pod: PodConfig::default(),
            listeners: ListenerConfig::default(),
            app: AppConfig::default(),
            services: Vec::new(),
            membership: MembershipConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            tls: None,
            shutdown_grace_ms: defaults::shutdown_grace_ms(),
            tracing: None,
        }
    }
}

impl TracingConfig {
    /// Tracing to `endpoint` with the default sampling and queue.
    pub fn to(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            sampling_ratio: defaults::tracing_sampling_ratio(),
            queue_size: defaults::tracing_queue_size(),
            batch_size: defaults::tracing_batch_size(),
        }
    }
}
