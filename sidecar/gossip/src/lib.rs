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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod id;
pub mod keyring;
pub mod meta;
pub mod wire;

pub use id::NodeId;
pub use keyring::{Keyring, KeyringError};
pub use meta::{Health, Member, MemberMeta, MemberStatus, MembershipView};
pub use wire::BadPacket;
