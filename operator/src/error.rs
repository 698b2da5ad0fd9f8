//! The operator's one error type; each variant maps to a metric label.

use crate::validate::InvalidSpec;

/// Why a reconcile or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached; retried with backoff.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks a field the API server always sets.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// A child or the CRD could not be rendered.
    #[error("cannot render: {0}")]
    Render(String),
    /// The spec is wrong; reported in status, not retried until it changes.
    #[error("invalid spec: {0}")]
    Invalid(#[from] InvalidSpec),
    /// JSON (de)serialization of an object failed.
    #[error("cannot serialize object: {0}")]
    Json(#[from] serde_json::Error),
    /// The OS random source failed (gossip key generation).
    #[error("cannot generate the gossip key: {0}")]
    Random(String),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
    /// The identity endpoint could not start (CA Secret, listener).
    #[error("identity endpoint: {0}")]
    Identity(String),
    /// A file or socket failed (CLI and the metrics server).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether the API server refused to create an object because its
    /// namespace is being deleted (403 with cause `NamespaceTerminating`).
    pub fn is_namespace_terminating(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")),
            _ => false,
        }
    }

    /// A short, bounded label for `shardmesh_reconcile_errors_total{error=...}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(_) => "api",
            Error::MissingField(_) => "missing-field",
            Error::Render(_) => "render",
            Error::Invalid(_) => "invalid-spec",
            Error::Json(_) => "serialize",
            Error::Random(_) => "random",
            Error::Lease(_) => "lease",
            Error::Identity(_) => "identity",
            Error::Io(_) => "io",
        }
    }
}
