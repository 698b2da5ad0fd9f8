//! The sidecar's current certificate behind an atomic pointer. rustls asks
//! the store for a certificate at every handshake, so swapping it renews the
//! identity for new connections while established ones carry on untouched.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::id::{identity_of, not_after, not_before};
use crate::{IdentityError, SpiffeId};

/// Fraction of a certificate's lifetime after which it is renewed.
pub const RENEW_AT: f64 = 0.7;

/// What the current certificate says, for renewal and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The identity it names.
    pub id: SpiffeId,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// When to renew: 70 % into the lifetime.
    pub fn renew_at(&self) -> SystemTime {
        let life = (self.not_after - self.not_before).max(0) as f64;
        let at = self.not_before as f64 + life * RENEW_AT;
        UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0))
    }
}

struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// The swappable certificate and key of this sidecar.
pub struct CertStore {
    current: ArcSwap<Current>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("info", &self.current.load().info)
            .finish()
    }
}

impl CertStore {
    /// A store holding `chain_pem` (leaf first) and its `key_pem`.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        Ok(Self {
            current: ArcSwap::from_pointee(load(chain_pem, key_pem)?),
        })
    }

    /// A store from DER parts (the sidecar's in-memory key).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        Ok(Self {
            current: ArcSwap::from_pointee(build(chain, key)?),
        })
    }

    /// Replaces the certificate; new handshakes use it at once.
    pub fn replace_pem(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, IdentityError> {
        let next = load(chain_pem, key_pem)?;
        let info = next.info.clone();
        self.current.store(Arc::new(next));
        Ok(info)
    }

    /// Replaces the certificate from DER parts.
    pub fn replace_der(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertInfo, IdentityError> {
        let next = build(chain, key)?;
        let info = next.info.clone();
        self.current.store(Arc::new(next));
        Ok(info)
    }

    /// What the current certificate says.
    pub fn info(&self) -> CertInfo {
        self.current.load().info.clone()
    }

    /// The current certificate and key.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.load().key.clone()
    }
}

fn load(chain_pem: &[u8], key_pem: &[u8]) -> Result<Current, IdentityError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem(format!("certificate chain: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| IdentityError::Pem(format!("private key: {e}")))?;
    build(chain, key)
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Current, IdentityError> {
    let leaf = chain
        .first()
        .ok_or_else(|| IdentityError::Pem("no certificate in the chain".into()))?;
    let info = CertInfo {
        id: identity_of(leaf)?,
        not_before: not_before(leaf)?,
        not_after: not_after(leaf)?,
    };
    let key = CertifiedKey::from_der(chain, key, &crate::provider())?;
    Ok(Current {
        key: Arc::new(key),
        info,
    })
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
