//! The mesh's certificate authority: generated once (or supplied by the
//! user), it signs each sidecar's short-lived certificate from its CSR. The
//! CA alone decides what a certificate names: the requested SANs are ignored.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{IdentityError, SpiffeId};

/// Default lifetime of a sidecar certificate.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Lifetime of a generated CA certificate (rotated by hand, see docs/security.md).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Clock skew allowance: certificates are valid from a few minutes ago.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Largest CSR accepted (PEM text), so a request cannot make us parse megabytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// A certificate authority: its certificate and signing key.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// What an issued certificate is valid for, and when.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    /// The identity written into the URI SAN.
    pub id: SpiffeId,
    /// DNS SANs (the pod's DNS name).
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// Valid from a few minutes ago for `lifetime`.
    pub fn new(id: SpiffeId, dns_names: Vec<String>, lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            id,
            dns_names,
            not_before: now - BACKDATE,
            not_after: now + lifetime,
        }
    }
}

impl Authority {
    /// A fresh CA (ECDSA P-256) for `trust_domain`.
    pub fn generate(trust_domain: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "shardmesh");
        dn.push(DnType::CommonName, format!("shardmesh CA {trust_domain}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// A CA from its PEM certificate and PKCS#8 key (a Secret's `ca.crt` and
    /// `ca.key`); refuses a key that does not match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| IdentityError::Pem(format!("CA certificate: {e}")))?;
        let (_, x509) = x509_parser::parse_x509_certificate(cert_der.as_ref())
            .map_err(|e| IdentityError::Parse(e.to_string()))?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(IdentityError::Pem(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        if !x509.is_ca() {
            return Err(IdentityError::Pem("the CA certificate is not a CA".into()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            issuer,
            cert_der: cert_der.into_owned(),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// The CA certificate (the trust anchor), PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA key, PKCS#8 PEM (to store it in a Secret or a 0600 file).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Signs `csr_pem` (whose signature is checked) for `spec`; the CSR's
    /// own subject and SANs are ignored. Returns the leaf certificate, PEM.
    pub fn issue_from_csr(&self, csr_pem: &str, spec: &LeafSpec) -> Result<String, IdentityError> {
        if csr_pem.len() > MAX_CSR_BYTES {
            return Err(IdentityError::Pem(format!(
                "CSR larger than {MAX_CSR_BYTES} bytes"
            )));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        self.issue_for_key(&csr.public_key, spec)
    }

    /// Signs a certificate for `public_key` (local mode: the runner generated it).
    pub fn issue_for_key(
        &self,
        public_key: &impl PublicKeyData,
        spec: &LeafSpec,
    ) -> Result<String, IdentityError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "shardmesh");
        dn.push(DnType::CommonName, spec.id.service_account.clone());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every sidecar is both a server (inbound) and a client (to peers).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let uri = spec
            .id
            .uri()
            .try_into()
            .map_err(|e: rcgen::Error| IdentityError::Id(e.to_string()))?;
        params.subject_alt_names.push(SanType::URI(uri));
        for dns in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(public_key, &self.issuer)?.pem())
    }
}

fn random_serial() -> Result<SerialNumber, IdentityError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| IdentityError::Pem(format!("no randomness: {e}")))?;
    // Positive and at most 20 bytes, as RFC 5280 asks.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}
