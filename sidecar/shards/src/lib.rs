//! shardmesh-shards: the pure core of sharding.
//!
//! # Layout
//! - [`key`]: the fixed key → shard function ([`shard_for_key`]).
//! - [`member`]: member ids ([`MemberId`]).
//! - [`assign`]: shard ownership by bounded-load rendezvous hashing ([`assign()`]).

mod assign;
mod key;
mod member;

pub use assign::{assign, Assignment};
pub use key::{key_hash, shard_for_key, KEY_HASH_SEED};
pub use member::MemberId;
