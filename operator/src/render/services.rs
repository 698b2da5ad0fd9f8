//! Services, the disruption budget, the gossip-key Secret and the CA ConfigMap.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::{
    child_meta, pod_selector, CA_CONFIG_MAP, CA_CONFIG_MAP_KEY, FIELD_MANAGER, GOSSIP_SECRET,
    GOSSIP_SECRET_KEY, GOSSIP_SERVICE, LABEL_MESH,
};
use crate::crd::ShardedService;
use crate::Error;

fn shared_meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn port(name: &str, port: i32, target: IntOrString, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(target),
        protocol: Some(protocol.into()),
        ..ServicePort::default()
    }
}

/// The namespace-wide headless Service selecting every mesh pod: its DNS
/// name seeds gossip, and it governs every StatefulSet's pod DNS names.
/// It lists not-ready pods too, because a pod joins gossip before it is ready.
/// No owner reference: it is shared by every ShardedService in the namespace.
pub fn gossip_service(namespace: &str) -> Service {
    Service {
        metadata: shared_meta(GOSSIP_SERVICE, namespace),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([(
                LABEL_MESH.to_string(),
                "true".to_string(),
            )])),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("gossip-udp", 7946, IntOrString::Int(7946), "UDP"),
                port("gossip-tcp", 7946, IntOrString::Int(7946), "TCP"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The client Service of `svc`: port 80 to the sidecars' inbound listener,
/// which routes each request to the owner of its key.
pub fn client_service(svc: &ShardedService) -> Result<Service, Error> {
    Ok(Service {
        metadata: child_meta(svc, &svc.name_any())?,
        spec: Some(ServiceSpec {
            selector: Some(pod_selector(&svc.name_any())),
            ports: Some(vec![port(
                "http",
                80,
                IntOrString::String("inbound".into()),
                "TCP",
            )]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The PodDisruptionBudget of `svc`, or none at one replica or fewer: a
/// budget of one unavailable pod out of one would block every node drain.
pub fn disruption_budget(svc: &ShardedService) -> Result<Option<PodDisruptionBudget>, Error> {
    if svc.spec.replicas <= 1 {
        return Ok(None);
    }
    let max_unavailable = svc
        .spec
        .disruption_budget
        .as_ref()
        .and_then(|b| b.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    Ok(Some(PodDisruptionBudget {
        metadata: child_meta(svc, &svc.name_any())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(pod_selector(&svc.name_any())),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }))
}

/// The gossip keyring Secret of `namespace` with `key` as its only (primary)
/// key: one base64 32-byte key per line. Created once and never overwritten,
/// so operators can rotate keys by editing it.
pub fn gossip_secret(namespace: &str, key: &[u8; 32]) -> Secret {
    let line = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    Secret {
        metadata: shared_meta(GOSSIP_SECRET, namespace),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            GOSSIP_SECRET_KEY.to_string(),
            ByteString(line.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// The namespace-wide trust anchor: the mesh CA's public certificate, which
/// sidecars mount read-only to verify peers and the identity endpoint. Only
/// the certificate (never the key) leaves the operator's namespace. No owner
/// reference: it is shared by every ShardedService in the namespace, and
/// re-applied when the CA changes.
pub fn ca_config_map(namespace: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: shared_meta(CA_CONFIG_MAP, namespace),
        data: Some(BTreeMap::from([(
            CA_CONFIG_MAP_KEY.to_string(),
            ca_pem.to_string(),
        )])),
        ..ConfigMap::default()
    }
}
