//! # shardmesh-config
//!
//! The sidecar's configuration, in one small crate so that the sidecar (which
//! reads it) and the operator (which renders it into a ConfigMap) share one
//! source of truth without the operator depending on hyper.
//!
//! ## Layout
//! - [`model`]: the types and their defaults (DESIGN.md's resilience defaults).
//! - [`env`]: per-pod overrides from environment variables.
//! - [`validate`]: checks that name the bad field.
//! - [`template`]: path templates such as `/accounts/{key}`.
//! - [`tls`]: the `tls` section (mutual TLS between sidecars).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod env;
pub mod model;
pub mod template;
pub mod tls;
pub mod validate;

pub use model::*;
pub use template::{PathTemplate, TemplateError};
pub use tls::{IssuerConfig, TlsConfig};

use std::fmt;
use std::path::Path;

/// Largest config file accepted; a config is a few KiB, so anything bigger is a mistake.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// One wrong field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `services[0].resilience.retries.attempts`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("config file {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The YAML does not match the schema.
    #[error("config is not valid YAML for the sidecar: {0}")]
    Parse(String),
    /// Fields have bad values.
    #[error("invalid config:{}", FieldErrors(.0))]
    Invalid(Vec<FieldError>),
}

struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.0 {
            write!(f, "\n  {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl SidecarConfig {
    /// Parses YAML text without applying the environment or validating.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Renders the config as YAML (what the operator writes into the ConfigMap).
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_saphyr::to_string(self).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads `path`, applies environment overrides from `vars`, and validates.
    pub fn load<I, K, V>(path: &Path, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown,
            source,
        })?;
        let mut config = Self::from_yaml(&text)?;
        env::apply(&mut config, vars)?;
        config.validated()
    }

    /// Returns the config if it is valid, or every problem found.
    pub fn validated(self) -> Result<Self, ConfigError> {
        let errors = validate::validate(&self);
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The config of `name`, if this sidecar knows the service.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests;
