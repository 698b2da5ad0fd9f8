//! The StatefulSet: the user's pod template plus the sidecar as a native
//! sidecar (an init container with `restartPolicy: Always`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SecretVolumeSource,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    child_meta, config_map_name, pod_selector, MeshTls, Settings, ANNOTATION_CHECKSUM,
    CA_CONFIG_MAP, CA_CONFIG_MAP_KEY, CONFIG_FILE, GOSSIP_SECRET, GOSSIP_SERVICE, LABEL_MESH,
    LABEL_SERVICE, SIDECAR_CONTAINER,
};
use crate::crd::ShardedService;
use crate::Error;

/// Where the sidecar reads its config.
pub const CONFIG_PATH: &str = "/etc/shardmesh/sidecar.yaml";
/// Where the gossip keyring Secret is mounted.
pub const GOSSIP_DIR: &str = "/etc/shardmesh/gossip";
/// Volume names the operator adds to the pod.
const CONFIG_VOLUME: &str = "shardmesh-config";
const GOSSIP_VOLUME: &str = "shardmesh-gossip-key";
const CA_VOLUME: &str = "shardmesh-ca";
const TOKEN_VOLUME: &str = "shardmesh-token";
/// Where the CA ConfigMap is mounted ([`super::CA_FILE`] is its `ca.crt`).
pub const CA_DIR: &str = "/etc/shardmesh/ca";
/// Where the projected token is mounted ([`super::TOKEN_FILE`] is its `token`).
pub const TOKEN_DIR: &str = "/var/run/secrets/shardmesh";
/// Lifetime of the projected token; the kubelet refreshes it at 80 %.
const TOKEN_SECONDS: i64 = 3600;
/// Long enough for the sidecar's 20 s drain plus a shard handoff.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The sidecar's admin port (probes, metrics, `/drain`).
const ADMIN_PORT: i32 = 7402;
/// The admin path the app's preStop hook calls (see `sidecar/src/drain.rs`).
pub const DRAIN_PATH: &str = "/drain";

/// Renders the StatefulSet of `svc`; `checksum` is the sidecar config's sha256.
pub fn stateful_set(
    svc: &ShardedService,
    settings: &Settings,
    checksum: &str,
) -> Result<StatefulSet, Error> {
    let name = svc.name_any();
    let spec = &svc.spec;
    let update_strategy = spec
        .update_strategy
        .clone()
        .unwrap_or(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: None,
        });
    Ok(StatefulSet {
        metadata: child_meta(svc, &name)?,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(GOSSIP_SERVICE.into()),
            // Shards move by gossip, not by pod order: start and stop pods together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(pod_selector(&name)),
                match_expressions: None,
            },
            update_strategy: Some(update_strategy),
            template: pod_template(svc, settings, checksum),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn pod_template(svc: &ShardedService, settings: &Settings, checksum: &str) -> PodTemplateSpec {
    let name = svc.name_any();
    let user = &svc.spec.template;
    let mut meta = user.metadata.clone().unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(LABEL_MESH.into(), "true".into());
    labels.insert(LABEL_SERVICE.into(), name.clone());
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    annotations.insert("prometheus.io/port".into(), "7402".into());
    annotations.insert("prometheus.io/path".into(), "/metrics".into());
    annotations.insert(ANNOTATION_CHECKSUM.into(), checksum.into());
    let pod = ObjectMeta {
        name: None,
        namespace: None,
        ..meta
    };

    let mut spec = user.spec.clone().unwrap_or_default();
    if let Some(app) = spec.containers.first_mut() {
        let env = app.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == "SHARDMESH_OUTBOUND") {
            env.push(value_env("SHARDMESH_OUTBOUND", "http://127.0.0.1:7400"));
        }
        // The kubelet stops the app before its native sidecar: the hook has
        // the sidecar hand the shards off first, while the app still serves
        // them. A preStop hook of the user's own is left as it is.
        let lifecycle = app.lifecycle.get_or_insert_with(Lifecycle::default);
        if lifecycle.pre_stop.is_none() {
            lifecycle.pre_stop = Some(drain_hook());
        }
    }
    let mut init = vec![sidecar_container(svc, settings)];
    init.extend(spec.init_containers.take().unwrap_or_default());
    spec.init_containers = Some(init);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(&name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    volumes.push(Volume {
        name: GOSSIP_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(GOSSIP_SECRET.into()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    if let Some(tls) = &settings.mesh_tls {
        volumes.extend(tls_volumes(tls));
    }
    spec.termination_grace_period_seconds = spec
        .termination_grace_period_seconds
        .or(Some(DEFAULT_GRACE_SECONDS));
    PodTemplateSpec {
        metadata: Some(pod),
        spec: Some(PodSpec { ..spec }),
    }
}

/// The native sidecar container.
pub fn sidecar_container(svc: &ShardedService, settings: &Settings) -> Container {
    let overrides = svc.spec.sidecar.clone().unwrap_or_default();
    let port = |name: &str, port: i32, protocol: &str| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    };
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    Container {
        name: SIDECAR_CONTAINER.into(),
        image: Some(
            overrides
                .image
                .unwrap_or_else(|| settings.sidecar_image.clone()),
        ),
        image_pull_policy: overrides.image_pull_policy,
        restart_policy: Some("Always".into()),
        args: Some(vec!["--config".into(), CONFIG_PATH.into()]),
        ports: Some(vec![
            port("outbound", 7400, "TCP"),
            port("inbound", 7401, "TCP"),
            port("admin", 7402, "TCP"),
            port("gossip-udp", 7946, "UDP"),
            port("gossip-tcp", 7946, "TCP"),
        ]),
        env: Some(sidecar_env(svc, settings, overrides.tracing.is_some())),
        readiness_probe: Some(probe("/ready", 5)),
        liveness_probe: Some(probe("/live", 10)),
        resources: Some(overrides.resources.unwrap_or_else(default_resources)),
        volume_mounts: Some(sidecar_mounts(settings.mesh_tls.is_some())),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The volumes mutual TLS adds: the namespace's CA ConfigMap and a
/// ServiceAccount token bound to the pod, with the identity endpoint's
/// audience (so the token is useless against the API server itself).
fn tls_volumes(tls: &MeshTls) -> [Volume; 2] {
    [
        Volume {
            name: CA_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CA_CONFIG_MAP.into(),
                items: Some(vec![KeyToPath {
                    key: CA_CONFIG_MAP_KEY.into(),
                    path: CA_CONFIG_MAP_KEY.into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(tls.audience.clone()),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        path: "token".into(),
                    }),
                    ..VolumeProjection::default()
                }]),
                default_mode: None,
            }),
            ..Volume::default()
        },
    ]
}

/// The sidecar's read-only mounts: config, gossip keyring, and with mutual
/// TLS the CA and the token.
fn sidecar_mounts(tls: bool) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: CONFIG_PATH.into(),
            sub_path: Some(CONFIG_FILE.into()),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        mount(GOSSIP_VOLUME, GOSSIP_DIR),
    ];
    if tls {
        mounts.push(mount(CA_VOLUME, CA_DIR));
        mounts.push(mount(TOKEN_VOLUME, TOKEN_DIR));
    }
    mounts
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("256Mi".into()),
        )])),
        claims: None,
    }
}

/// `GET /drain` on the sidecar's admin port, by number: a named port only
/// resolves among the hook's own container's ports.
fn drain_hook() -> LifecycleHandler {
    LifecycleHandler {
        http_get: Some(HTTPGetAction {
            path: Some(DRAIN_PATH.into()),
            port: IntOrString::Int(ADMIN_PORT),
            ..HTTPGetAction::default()
        }),
        ..LifecycleHandler::default()
    }
}

/// The sidecar's environment: per-pod facts, and the operator's default
/// collector when the spec names no tracing of its own.
fn sidecar_env(svc: &ShardedService, settings: &Settings, own_tracing: bool) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("SHARDMESH_POD_NAME", "metadata.name"),
        field_env("SHARDMESH_ADVERTISE_HOST", "status.podIP"),
        // The node's kubelet runs the app's preStop `/drain` from there.
        field_env("SHARDMESH_HOST_IP", "status.hostIP"),
        value_env("SHARDMESH_SERVICE", &svc.name_any()),
    ];
    if let (false, Some(endpoint)) = (own_tracing, &settings.tracing_endpoint) {
        env.push(value_env("SHARDMESH_TRACING_ENDPOINT", endpoint));
        if let Some(ratio) = &settings.tracing_sampling_ratio {
            env.push(value_env("SHARDMESH_TRACING_SAMPLING_RATIO", ratio));
        }
    }
    env
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}
