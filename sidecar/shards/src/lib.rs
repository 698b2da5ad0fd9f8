//! shardmesh-shards: the pure core of sharding.
//!
//! # Layout
//! - [`key`]: the fixed key → shard function (`shard_for_key`).

mod key;

pub use key::{key_hash, shard_for_key, KEY_HASH_SEED};
