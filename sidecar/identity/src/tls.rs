//! rustls configs for mesh mTLS: TLS 1.3 only, ALPN `h2`, both sides
//! present a certificate from the store and must chain to the mesh's trust
//! anchor. Peers are known by their SPIFFE identity, not by host name: a
//! sidecar dials a pod IP, so the client checks the chain and that the
//! server names an identity of the trust domain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::id::identity_of;
use crate::{CertStore, IdentityError, SpiffeId};

/// ALPN protocol of the sidecar-to-sidecar hop.
pub const ALPN_H2: &[u8] = b"h2";

/// The mesh's trust anchor: the CA certificate(s) and the trust domain
/// every peer identity must belong to.
#[derive(Clone, Debug)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    trust_domain: String,
}

impl Trust {
    /// Trust the CA certificates in `ca_pem` (several during a CA rotation).
    pub fn from_pem(ca_pem: &[u8], trust_domain: &str) -> Result<Self, IdentityError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| IdentityError::Pem(format!("trust anchor: {e}")))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(IdentityError::Pem(
                "trust anchor file holds no certificate".into(),
            ));
        }
        Ok(Self {
            roots: Arc::new(roots),
            trust_domain: trust_domain.to_string(),
        })
    }

    /// The trust domain peers must belong to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root store (for an HTTPS client of the identity endpoint).
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }
}

/// The inbound listener's config: client certificates required.
pub fn server_config(
    store: Arc<CertStore>,
    trust: &Trust,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let provider = crate::provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
            .build()
            .map_err(|e| IdentityError::Pem(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The identity endpoint's config: a server certificate from the store, no
/// client certificate (callers authenticate with their ServiceAccount token).
pub fn endpoint_server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, IdentityError> {
    let config = ServerConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(Arc::new(config))
}

/// The peer client's config: presents this sidecar's certificate and
/// accepts servers that chain to the anchor and name a mesh identity.
pub fn client_config(
    store: Arc<CertStore>,
    trust: &Trust,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let provider = crate::provider();
    let verifier = Arc::new(MeshServerVerifier {
        trust: trust.clone(),
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(store);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The identity a peer proved in the handshake (its first certificate).
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    certs
        .and_then(|c| c.first())
        .and_then(|c| identity_of(c).ok())
}

/// Why a handshake failed, as a bounded metric label.
pub fn failure_reason(err: &std::io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match err.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match tls {
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => "expired",
        Error::InvalidCertificate(CertificateError::NotValidYet)
        | Error::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => "not-yet-valid",
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => "unknown-ca",
        Error::InvalidCertificate(_) => "bad-certificate",
        Error::NoCertificatesPresented => "no-client-certificate",
        Error::InvalidMessage(_) => "not-tls",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        Error::AlertReceived(_) => "alert",
        _ => "other",
    }
}

/// Every value [`failure_reason`] returns (to initialise metrics).
pub const FAILURE_REASONS: [&str; 12] = [
    "timeout",
    "eof",
    "io",
    "expired",
    "not-yet-valid",
    "unknown-ca",
    "bad-certificate",
    "no-client-certificate",
    "not-tls",
    "incompatible",
    "alert",
    "other",
];

/// Server verification by chain and SPIFFE identity instead of host name.
#[derive(Debug)]
struct MeshServerVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.trust.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match identity_of(end_entity) {
            Ok(id) if id.trust_domain == self.trust.trust_domain => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
