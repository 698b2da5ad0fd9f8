//! # shardmesh-sidecar
//!
//! The proxy every pod runs beside its app. The app sends plain HTTP/1.1 to
//! the outbound listener naming a service and a key; the sidecar finds the
//! pod that owns the key's shard and sends the request to that pod's inbound
//! listener over pooled HTTP/2, through deadlines, retries, circuit breakers
//! and bulkheads. The inbound side checks ownership and calls the local app
//! behind a concurrency limit.
//!
//! ## Layout
//! - [`sidecar`]: binding listeners, running, draining on shutdown.
//! - [`server`]: the accept loop with limits and graceful shutdown.
//! - [`h1`]: the HTTP/1.1 fast path; hyper serves everything else.
//! - [`outbound`], [`inbound`], [`admin`]: the three listeners' handlers.
//! - [`proxy`]: shared state and the per-route resilience stacks.
//! - [`resilience`]: glue to `shardmesh-resilience` (stacks, metrics observer).
//! - [`routing`]: service/key extraction, the routing table, balancing.
//! - [`gate`]: whether this pod may serve a shard now.
//! - [`grpc`]: gRPC at the edges: `grpc-timeout`, failures as statuses.
//! - [`membership`]: gossip membership feeding the routing table.
//! - [`sharding`]: the shard handoff driver and the managed gate.
//! - [`client`], [`app_client`]: pooled HTTP/2 to peers, HTTP/1.1 to the app.
//! - [`tls`], [`issuer`]: mutual TLS between sidecars, the certificate and
//!   its renewal (from files or the operator's identity endpoint).
//! - [`reason`], [`rescue`]: the error contract and the one mapping to it.
//! - [`metrics`]: prometheus families.
//! - [`spans`]: W3C trace context and a span per hop, exported over OTLP.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod app_client;
pub mod body;
pub mod client;
pub mod drain;
pub mod gate;
pub mod grpc;
pub mod h1;
pub mod headers;
pub mod inbound;
pub mod issuer;
pub mod membership;
pub mod metrics;
pub mod outbound;
pub mod proxy;
pub mod reason;
pub mod rescue;
pub mod resilience;
pub mod routing;
pub mod server;
pub mod sharding;
pub mod sidecar;
pub mod spans;
pub mod telemetry;
pub mod tls;

pub use sidecar::{BoundAddrs, Sidecar, StartError};
