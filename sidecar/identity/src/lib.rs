//! # shardmesh-identity
//!
//! Who a sidecar is, and how another sidecar can tell. The operator (or the
//! local runner) runs a small certificate authority; every sidecar holds a
//! short-lived certificate whose URI SAN names its identity
//! (`spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT`). This crate has
//! the pieces both sides share, with rustls (ring provider, the same one kube
//! uses) and rcgen; no OpenSSL.
//!
//! ## Layout
//! - [`id`]: SPIFFE identities, and reading one out of a peer's certificate.
//! - [`ca`]: the certificate authority: generate or load, issue from a CSR.
//! - [`leaf`]: a sidecar's in-memory key and its CSR.
//! - [`store`]: the current certificate behind a swappable resolver, so
//!   renewal needs no reconnect.
//! - [`tls`]: rustls server and client configs for mesh mTLS (TLS 1.3, h2).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ca;
pub mod id;
pub mod leaf;
pub mod store;
pub mod tls;

pub use ca::{Authority, DEFAULT_LIFETIME};

/// Path of the operator's identity endpoint that sidecars POST their CSR to;
/// the contract between the sidecar's issuer client and the operator.
pub const CERTIFICATE_PATH: &str = "/v1/certificate";

/// Largest ServiceAccount token a sidecar sends and the endpoint accepts.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
pub use id::SpiffeId;
pub use leaf::LeafKey;
pub use store::CertStore;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Certificate generation, signing or CSR parsing failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A PEM input held no usable item.
    #[error("{0}")]
    Pem(String),
    /// rustls refused a key, certificate or configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// An identity string is malformed.
    #[error("identity: {0}")]
    Id(String),
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
}

/// The crypto provider every mesh config uses (ring, as kube does: one
/// provider in the binary).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
