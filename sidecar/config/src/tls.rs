//! The `tls` section: mutual TLS between sidecars. Present means on: the
//! inbound listener accepts only TLS 1.3 with a client certificate from the
//! trust anchor, peers are called over h2 on TLS, and gossip push-pull too.
//! Absent means plaintext h2c (single-host development and tests).

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

use crate::validate::Errors;

/// Mutual TLS between sidecars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Trust domain every peer identity must belong to
    /// (`spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT`).
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// PEM file with the trust anchor(s): the mesh CA certificate (two
    /// during a CA rotation).
    pub ca_file: String,
    /// PEM certificate chain of this sidecar (local mode: written by the
    /// local runner). Re-read at 70 % of its lifetime. Exclusive with `issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key matching `certFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The operator's identity endpoint: the sidecar generates its key in
    /// memory and sends a CSR there, authenticated by its ServiceAccount token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerConfig>,
    /// Client identities allowed to call this pod's service; empty allows
    /// every identity of the trust domain. This pod's own identity is always
    /// allowed (forwards between members of the service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_identities: Vec<String>,
    /// Time a peer gets to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// Where a sidecar gets its certificate from the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerConfig {
    /// `https://host:port` of the identity endpoint (served with a
    /// certificate from the trust anchor).
    pub url: String,
    /// The projected ServiceAccount token file.
    #[serde(default = "default_token_file")]
    pub token_file: String,
}

/// Longest list of allowed identities (each check is a set lookup, but the
/// config stays readable).
pub const MAX_ALLOWED_IDENTITIES: usize = 256;

fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

/// TLS handshake deadline unless `tls.handshakeTimeoutMs` says otherwise;
/// the operator renders it too.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

fn default_handshake_timeout_ms() -> u64 {
    DEFAULT_HANDSHAKE_TIMEOUT_MS
}

fn default_token_file() -> String {
    "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string()
}

/// Checks the `tls` section.
pub fn validate_tls(errs: &mut Errors, tls: &TlsConfig) {
    if !valid_label_chars(&tls.trust_domain) {
        errs.push(
            "tls.trustDomain",
            format!(
                "{:?} must be lowercase letters, digits, '-', '.'",
                tls.trust_domain
            ),
        );
    }
    if tls.ca_file.trim().is_empty() {
        errs.push("tls.caFile", "is required");
    }
    match (&tls.cert_file, &tls.key_file, &tls.issuer) {
        (Some(_), Some(_), None) => {}
        (None, None, Some(issuer)) => {
            if !issuer.url.starts_with("https://") {
                errs.push("tls.issuer.url", "must be an https:// URL");
            }
            if issuer.token_file.trim().is_empty() {
                errs.push("tls.issuer.tokenFile", "must not be empty");
            }
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            errs.push("tls", "certFile and keyFile go together")
        }
        _ => errs.push("tls", "set either certFile and keyFile, or issuer"),
    }
    if tls.allowed_identities.len() > MAX_ALLOWED_IDENTITIES {
        errs.push(
            "tls.allowedIdentities",
            format!("at most {MAX_ALLOWED_IDENTITIES} identities"),
        );
    }
    for (i, id) in tls.allowed_identities.iter().enumerate() {
        if !spiffe_shape(id, &tls.trust_domain) {
            errs.push(
                format!("tls.allowedIdentities[{i}]"),
                format!(
                    "{id:?} is not spiffe://{}/ns/NAMESPACE/sa/SERVICEACCOUNT",
                    tls.trust_domain
                ),
            );
        }
    }
    if !(100..=60_000).contains(&tls.handshake_timeout_ms) {
        errs.push("tls.handshakeTimeoutMs", "must be between 100 and 60000");
    }
}

fn valid_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn spiffe_shape(id: &str, trust_domain: &str) -> bool {
    let Some(rest) = id
        .strip_prefix("spiffe://")
        .and_then(|r| r.strip_prefix(trust_domain))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), ["", "ns", ns, "sa", sa] if valid_part(ns) && valid_part(sa))
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsConfig {
        TlsConfig {
            trust_domain: "mesh.local".into(),
            ca_file: "ca.crt".into(),
            cert_file: Some("tls.crt".into()),
            key_file: Some("tls.key".into()),
            issuer: None,
            allowed_identities: vec!["spiffe://mesh.local/ns/bank/sa/ledger".into()],
            handshake_timeout_ms: 5000,
        }
    }

    fn errors(t: &TlsConfig) -> Vec<String> {
        let mut e = Errors::default();
        validate_tls(&mut e, t);
        e.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn accepts_files_or_issuer() {
        assert!(errors(&tls()).is_empty());
        let mut t = tls();
        t.cert_file = None;
        t.key_file = None;
        t.issuer = Some(IssuerConfig {
            url: "https://shardmesh-operator.shardmesh:8443".into(),
            token_file: default_token_file(),
        });
        assert!(errors(&t).is_empty());
    }

    #[test]
    fn names_each_bad_field() {
        let mut t = tls();
        t.key_file = None;
        t.ca_file = String::new();
        t.allowed_identities = vec![
            "spiffe://other/ns/a/sa/b".into(),
            "spiffe://mesh.local/ns/a".into(),
        ];
        t.handshake_timeout_ms = 1;
        assert_eq!(
            errors(&t),
            [
                "tls.caFile",
                "tls",
                "tls.allowedIdentities[0]",
                "tls.allowedIdentities[1]",
                "tls.handshakeTimeoutMs"
            ]
        );
        let mut t = tls();
        t.cert_file = None;
        t.key_file = None;
        t.issuer = Some(IssuerConfig {
            url: "http://x".into(),
            token_file: String::new(),
        });
        assert_eq!(errors(&t), ["tls.issuer.url", "tls.issuer.tokenFile"]);
    }
}
