//! SPIFFE identities: `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT`,
//! written into the URI SAN of every mesh certificate and read back from a
//! peer's certificate after the handshake.

use std::fmt;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::IdentityError;

/// Longest identity accepted: bounds parsing and metric label values.
pub const MAX_ID_LEN: usize = 512;

/// A workload identity in a trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The mesh's trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Kubernetes namespace of the pod.
    pub namespace: String,
    /// ServiceAccount the pod runs as.
    pub service_account: String,
}

impl SpiffeId {
    /// An identity from its three parts, each checked.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        for (what, v) in [
            ("trust domain", trust_domain),
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if v.is_empty() || v.len() > 253 {
                return Err(IdentityError::Id(format!(
                    "{what} must have 1 to 253 characters"
                )));
            }
            if !v.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
            }) {
                return Err(IdentityError::Id(format!(
                    "{what} {v:?} may hold only lowercase letters, digits, '-', '.', '_'"
                )));
            }
        }
        Ok(Self {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }

    /// Parses `spiffe://TD/ns/NS/sa/SA`.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = || {
            IdentityError::Id(format!(
                "{uri:?} is not spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT"
            ))
        };
        if uri.len() > MAX_ID_LEN {
            return Err(bad());
        }
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => Self::new(td, ns, sa).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The URI form.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// The SPIFFE identity in `cert`'s URI SANs, if it carries exactly one.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError::Parse(e.to_string()))?
        .ok_or_else(|| IdentityError::Id("certificate has no subject alternative names".into()))?;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if uri.starts_with("spiffe://") {
                if found.is_some() {
                    return Err(IdentityError::Id(
                        "certificate names more than one SPIFFE identity".into(),
                    ));
                }
                found = Some(SpiffeId::parse(uri)?);
            }
        }
    }
    found.ok_or_else(|| IdentityError::Id("certificate names no SPIFFE identity".into()))
}

/// `notAfter` of `cert`, in seconds since the Unix epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Result<i64, IdentityError> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    Ok(x509.validity().not_after.timestamp())
}

/// `notBefore` of `cert`, in seconds since the Unix epoch.
pub fn not_before(cert: &CertificateDer<'_>) -> Result<i64, IdentityError> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .map_err(|e| IdentityError::Parse(e.to_string()))?;
    Ok(x509.validity().not_before.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let id = SpiffeId::parse("spiffe://mesh.local/ns/bank/sa/ledger").expect("valid");
        assert_eq!(id.namespace, "bank");
        assert_eq!(id.to_string(), "spiffe://mesh.local/ns/bank/sa/ledger");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "http://x/ns/a/sa/b",
            "spiffe://x/ns/a",
            "spiffe://x/ns/a/sa/b/c",
            "spiffe://X/ns/a/sa/b",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SpiffeId::parse(&format!("spiffe://{}/ns/a/sa/b", "a".repeat(600))).is_err());
    }
}
