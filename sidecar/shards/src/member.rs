//! Member identity as the sharding core sees it.

use std::fmt;
use std::sync::Arc;

/// A member of a service, named by its stable id (the pod name).
///
/// Ownership is a pure function of these ids, so every sidecar must use the
/// same string for the same pod; the ordering of ids breaks hashing ties.
/// Cheap to clone: the sidecar copies ids into many tables.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// Wraps a member's id (pod name).
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as a string, e.g. for logs and `/debug/shards`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MemberId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for MemberId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}
