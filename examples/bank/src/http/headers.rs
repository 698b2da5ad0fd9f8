//! The shardmesh headers the bank reads and writes.

use hyper::header::HeaderName;

/// Target service of a request sent through the outbound sidecar.
pub const SERVICE: HeaderName = HeaderName::from_static("x-shardmesh-service");
/// Shard key of a request sent through the outbound sidecar.
pub const KEY: HeaderName = HeaderName::from_static("x-shardmesh-key");
/// Marks a write safe to retry (it carries an op id).
pub const IDEMPOTENT: HeaderName = HeaderName::from_static("x-shardmesh-idempotent");
/// Deadline budget of a request, in milliseconds.
pub const TIMEOUT_MS: HeaderName = HeaderName::from_static("x-shardmesh-timeout-ms");
/// Shard of a request delivered by the sidecar.
pub const SHARD: HeaderName = HeaderName::from_static("x-shardmesh-shard");
/// Ownership epoch of a request delivered by the sidecar.
pub const EPOCH: HeaderName = HeaderName::from_static("x-shardmesh-epoch");
/// Reason of an answer the mesh made.
pub const ERROR: HeaderName = HeaderName::from_static("x-shardmesh-error");
/// The service name of the bank in the mesh.
pub const BANK_SERVICE: &str = "bank";
