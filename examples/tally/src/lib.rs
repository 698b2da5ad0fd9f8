//! # tally: a sharded gRPC sample service
//!
//! Counters sharded by their key, served over gRPC by `tonic`: the mesh's
//! gRPC path (docs/grpc.md) carries every call kind to the counter's owner.
//! An app calls its sidecar's outbound listener (h2c) with the metadata
//! `x-shardmesh-service: tally` and `x-shardmesh-key: KEY`.
//!
//! | method | kind | what |
//! | --- | --- | --- |
//! | `Add` | unary | adds to a counter; test knobs: delay, injected failures |
//! | `Watch` | server streaming | `count` totals with filler payloads |
//! | `Upload` | client streaming | counts the messages and bytes received |
//! | `Chat` | bidirectional | echoes every message as it arrives |
//!
//! Counters live in memory: the sample shows routing, not persistence (the
//! bank shows that).

pub mod proto;
pub mod server;

/// The generated client and server of `tally.Tally`.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/tally.Tally.rs"));
}

pub use pb::tally_client::TallyClient;
pub use pb::tally_server::TallyServer;
pub use server::Tally;

/// Binary metadata key of the injected failures' details (`-bin`: base64
/// on the wire), checked end to end by the mesh tests.
pub const DETAIL_KEY: &str = "tally-detail-bin";

/// The bytes of [`DETAIL_KEY`] (not valid UTF-8, on purpose).
pub const DETAIL: &[u8] = &[0, 159, 146, 150, 255];
