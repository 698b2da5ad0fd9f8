//! # shardmesh-bank
//!
//! The sample sharded, event-sourced service of shardmesh and the tool that
//! loads and verifies it.
//!
//! ## Layout
//! - [`model`]: request bodies and input rules (ids, amounts, body size).
//! - [`shard_key`]: key → shard (XXH3-64 mod shards), for standalone mode.
//! - [`event`], [`ledger`]: the events of a shard and the pure state they fold into.
//! - [`journal`]: a shard's log file: torn-tail repair, owner fencing, replay.
//! - [`committer`]: group commit (fsync before acknowledging); [`fence`]:
//!   refusing batches a newer owner's acquire marker voided.
//! - [`shard`], [`bank`]: held shards, epoch fencing, operations.
//! - [`saga`]: the transfer saga over an [`accounts::Accounts`] client.
//! - [`http`]: the app's HTTP server and routes; [`app`]: its command line.
//! - [`load`]: `bank-load`, the load generator and verifier.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
pub mod app;
pub mod bank;
pub mod committer;
pub mod event;
pub mod fence;
pub mod http;
pub mod journal;
pub mod ledger;
pub mod load;
pub mod model;
pub mod saga;
pub mod shard;
pub mod shard_key;
