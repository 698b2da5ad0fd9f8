//! Mutual TLS in rendered pods: the issuer-mode `tls` section, the projected
//! token, the CA ConfigMap and its read-only mount.

use k8s_openapi::api::core::v1::{PodSpec, Volume};
use shardmesh_config::SidecarConfig;

use super::*;
use crate::crd::SecuritySpec;
use crate::testing::fixtures::sharded_service;

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn tls_settings() -> Settings {
    Settings {
        mesh_tls: Some(MeshTls {
            trust_domain: "mesh.example".into(),
            issuer_url: "https://shardmesh-operator.shardmesh-system.svc:8443".into(),
            audience: "shardmesh".into(),
            ca_pem: CA_PEM.into(),
        }),
        ..Settings::default()
    }
}

fn pod(c: &Children) -> &PodSpec {
    c.stateful_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn volume<'a>(c: &'a Children, name: &str) -> Option<&'a Volume> {
    pod(c).volumes.iter().flatten().find(|v| v.name == name)
}

fn config(c: &Children) -> SidecarConfig {
    let yaml = &c.config_map.data.as_ref().expect("data")[CONFIG_FILE];
    serde_saphyr::from_str(yaml).expect("sidecar config")
}

#[test]
fn without_the_identity_endpoint_pods_stay_plaintext() {
    let c = desired(&sharded_service("shop", "bank"), &Settings::default()).unwrap();
    assert!(config(&c).tls.is_none());
    assert!(c.ca_config_map.is_none());
    assert!(volume(&c, "shardmesh-token").is_none());
    assert!(volume(&c, "shardmesh-ca").is_none());
}

#[test]
fn sidecar_config_gets_an_issuer_mode_tls_section() {
    let mut svc = sharded_service("shop", "bank");
    svc.spec.security = Some(SecuritySpec {
        allowed_identities: vec!["spiffe://mesh.example/ns/shop/sa/web".into()],
    });
    let c = desired(&svc, &tls_settings()).unwrap();
    let tls = config(&c).tls.expect("tls section");
    assert_eq!(tls.trust_domain, "mesh.example");
    assert_eq!(tls.ca_file, "/etc/shardmesh/ca/ca.crt");
    assert_eq!(tls.cert_file, None);
    assert_eq!(tls.key_file, None);
    let issuer = tls.issuer.expect("issuer");
    assert_eq!(
        issuer.url,
        "https://shardmesh-operator.shardmesh-system.svc:8443"
    );
    assert_eq!(issuer.token_file, "/var/run/secrets/shardmesh/token");
    assert_eq!(
        tls.allowed_identities,
        ["spiffe://mesh.example/ns/shop/sa/web"]
    );
    // The sidecar itself accepts what the operator renders.
    let mut cfg = config(&c);
    cfg.pod.name = "bank-0".into();
    assert_eq!(shardmesh_config::validate::validate(&cfg), []);
}

#[test]
fn pods_mount_a_projected_token_and_the_ca_read_only() {
    let c = desired(&sharded_service("shop", "bank"), &tls_settings()).unwrap();
    let token = volume(&c, "shardmesh-token").expect("token volume");
    let projection = &token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0];
    let sa = projection.service_account_token.as_ref().unwrap();
    assert_eq!(sa.audience.as_deref(), Some("shardmesh"));
    assert_eq!(sa.path, "token");
    assert!(sa.expiration_seconds.unwrap_or(0) >= 600);
    let ca = volume(&c, "shardmesh-ca").expect("ca volume");
    let source = ca.config_map.as_ref().unwrap();
    assert_eq!(source.name, CA_CONFIG_MAP);
    assert_eq!(source.items.as_ref().unwrap()[0].key, "ca.crt");

    let sidecar = &pod(&c).init_containers.as_ref().unwrap()[0];
    let mounts = sidecar.volume_mounts.as_ref().unwrap();
    for (name, path) in [
        ("shardmesh-ca", "/etc/shardmesh/ca"),
        ("shardmesh-token", "/var/run/secrets/shardmesh"),
    ] {
        let m = mounts.iter().find(|m| m.name == name).expect(name);
        assert_eq!(m.mount_path, path);
        assert_eq!(m.read_only, Some(true));
    }
    // Only the sidecar sees the token and the CA.
    let app = &pod(&c).containers[0];
    assert!(app
        .volume_mounts
        .iter()
        .flatten()
        .all(|m| !m.name.starts_with("shardmesh-")));
}

#[test]
fn the_ca_config_map_is_namespace_wide_and_public_only() {
    let c = desired(&sharded_service("shop", "bank"), &tls_settings()).unwrap();
    let cm = c.ca_config_map.expect("CA ConfigMap");
    assert_eq!(cm.metadata.name.as_deref(), Some("shardmesh-ca"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
    assert!(cm.metadata.owner_references.is_none());
    let data = cm.data.unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data["ca.crt"], CA_PEM);
}

#[test]
fn turning_tls_on_rolls_the_pods() {
    let svc = sharded_service("shop", "bank");
    let plain = desired(&svc, &Settings::default()).unwrap();
    let tls = desired(&svc, &tls_settings()).unwrap();
    assert_ne!(plain.config_checksum, tls.config_checksum);
}

#[test]
fn allowed_identities_must_be_spiffe_ids() {
    let mut svc = sharded_service("shop", "bank");
    svc.spec.security = Some(SecuritySpec {
        allowed_identities: vec!["web".into()],
    });
    let err = crate::validate(&svc, crate::render::DEFAULT_TRUST_DOMAIN)
        .unwrap_err()
        .to_string();
    assert!(err.contains("security.allowedIdentities"), "{err}");
    svc.spec.security = Some(SecuritySpec {
        allowed_identities: vec!["spiffe://cluster.local/ns/shop/sa/web".into()],
    });
    crate::validate(&svc, crate::render::DEFAULT_TRUST_DOMAIN).unwrap();
}

#[test]
fn allowed_identities_are_checked_against_the_operators_trust_domain() {
    let mut svc = sharded_service("shop", "bank");
    svc.spec.security = Some(SecuritySpec {
        allowed_identities: vec!["spiffe://mesh.example/ns/shop/sa/web".into()],
    });
    crate::validate(&svc, "mesh.example").unwrap();
    let err = crate::validate(&svc, "cluster.local")
        .unwrap_err()
        .to_string();
    assert!(err.contains("security.allowedIdentities"), "{err}");
    assert_eq!(tls_settings().trust_domain(), "mesh.example");
}

#[test]
fn the_body_limit_is_a_per_service_sidecar_setting() {
    let mut svc = sharded_service("shop", "bank");
    assert_eq!(
        config(&children_plain(&svc)).limits.max_request_body_bytes,
        16 * 1024 * 1024
    );
    svc.spec.sidecar = Some(crate::crd::SidecarSpec {
        max_request_body_bytes: Some(4096),
        ..Default::default()
    });
    assert_eq!(
        config(&children_plain(&svc)).limits.max_request_body_bytes,
        4096
    );
    svc.spec.sidecar = Some(crate::crd::SidecarSpec {
        max_request_body_bytes: Some(0),
        ..Default::default()
    });
    let err = crate::validate(&svc, crate::render::DEFAULT_TRUST_DOMAIN)
        .unwrap_err()
        .to_string();
    assert!(err.contains("maxRequestBodyBytes"), "{err}");
}

fn children_plain(svc: &ShardedService) -> Children {
    desired(svc, &Settings::default()).unwrap()
}
