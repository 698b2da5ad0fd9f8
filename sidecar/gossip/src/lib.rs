//! # shardmesh-gossip
//!
//! Membership and failure detection for the sidecars: SWIM (the `foca`
//! crate) with Lifeguard layered around it, metadata, keyring encryption and
//! a tokio UDP/TCP driver.
//!
//! ## Layout
//! - [`meta`]: member metadata and the view handed to the sidecar.
//! - [`id`]: the SWIM identity (address + start generation).
//! - [`keyring`]: authenticated encryption with key rotation.
//! - [`wire`]: the versioned, size-bounded message codec.
//! - [`lifeguard`]: local health and suspicion-timeout arithmetic.
//! - [`core`]: the sans-IO protocol core (foca + Lifeguard + metadata).
//! - [`observer`]: metric hooks the sidecar implements.
//! - [`settings`]: settings built from the sidecar config.
//! - [`driver`]: the tokio runtime (UDP probes, TCP push-pull, seeds).
//! - [`pushpull`]: bounded TCP framing for full-state exchange.
//! - [`sim`]: the deterministic simulator behind the tests and the benchmark.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod core;
pub mod driver;
pub mod id;
pub mod keyring;
pub mod lifeguard;
pub mod meta;
pub mod observer;
pub mod pushpull;
pub mod settings;
pub mod sim;
pub mod wire;

pub use driver::{AppMessage, Error, Gossip, GossipHandle};
pub use id::NodeId;
pub use keyring::{Keyring, KeyringError};
pub use meta::{Health, Member, MemberMeta, MemberStatus, MembershipView};
pub use observer::{GossipObserver, HealthCounts, NoopObserver, ProbeResult};
pub use pushpull::GossipTls;
pub use settings::{GossipSettings, Seeds, Timing};
pub use wire::BadPacket;
