//! # shardmesh-operator
//!
//! Turns `ShardedService` custom resources into running sharded services.
//!
//! ## Layout
//! - [`crd`]: the custom resource types and the generated CRD.
//! - [`validate`]: spec checks, with the same messages as the CRD's CEL rules.
//! - [`render`]: pure desired state, spec → children (and the sidecar config).
//! - [`reconcile`]: server-side apply of the children, status, events, backoff.
//! - [`metrics`] and [`server`]: Prometheus metrics, `/healthz`, `/readyz`.
//! - [`identity`]: the identity endpoint (mesh CA, CSR + TokenReview).
//! - [`leader`]: Lease-based leader election.
//! - [`run`]: wires the controller, the server, the lease and shutdown.
//! - [`cli`]: the `shardmesh-operator` command line.
//! - [`local`]: the local runner (`local up | status | scale`).
//! - `testing` (only with `cfg(test)` or the `testing` feature): object
//!   builders and `testing::fake_api`, an in-memory API server for tests
//!   and the benchmark; never in a release binary.
// `deny`, not `forbid`: the one exception is the local runner's
// `pre_exec` hook (a parent-death signal for pod processes), which std
// only offers as an unsafe fn.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod crd;
mod error;
pub mod identity;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub use crd::{ShardedService, ShardedServiceSpec, ShardedServiceStatus};
pub use error::Error;
pub use render::{render_sidecar_config, MeshInputs};
pub use validate::validate;
