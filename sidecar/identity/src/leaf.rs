//! A sidecar's own key: generated in memory at start (and at each renewal),
//! never written to disk by the sidecar; only its CSR leaves the process.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{IdentityError, SpiffeId};

/// An ECDSA P-256 key pair held in memory.
pub struct LeafKey {
    key: KeyPair,
}

impl std::fmt::Debug for LeafKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafKey").finish_non_exhaustive()
    }
}

impl LeafKey {
    /// A fresh key.
    pub fn generate() -> Result<Self, IdentityError> {
        Ok(Self {
            key: KeyPair::generate()?,
        })
    }

    /// A CSR (PEM) asking for `id` and `dns_names`. The CA decides what the
    /// certificate finally names; the request says what the sidecar expects.
    pub fn csr_pem(&self, id: &SpiffeId, dns_names: &[String]) -> Result<String, IdentityError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.service_account.clone());
        params.distinguished_name = dn;
        let uri = id
            .uri()
            .try_into()
            .map_err(|e: rcgen::Error| IdentityError::Id(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        for dns in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// A CSR naming only `common_name` (the pod): the identity endpoint
    /// decides the identity from the caller's ServiceAccount token.
    pub fn csr_pem_named(&self, common_name: &str) -> Result<String, IdentityError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// The key as PKCS#8 PEM (local mode writes it for the sidecar).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The key in the form rustls loads.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The key pair, for signing its certificate in local mode.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}
