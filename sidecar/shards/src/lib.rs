//! shardmesh-shards: the pure core of sharding. No I/O, no clocks: the
//! sidecar feeds membership, notices, callbacks and time, and carries out
//! the returned actions. See `docs/sharding.md`.
//!
//! # Layout
//! - `key`: the fixed key → shard function ([`shard_for_key`]).
//! - `member`: member ids ([`MemberId`]).
//! - `assign`: shard ownership by bounded-load rendezvous hashing ([`assign()`]).
//! - `view`: the membership input ([`Peer`], [`Health`]) and gossip tags.
//! - `majority`: keep-majority ([`KeepMajority`]).
//! - `handoff`: the per-member handoff state machine ([`ShardTable`]).
//! - `notice`: release notices and their wire encoding ([`ReleaseNotice`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod assign;
mod handoff;
mod key;
mod majority;
mod member;
mod notice;
mod view;

pub use assign::{assign, Assignment};
pub use handoff::{
    Action, Callback, ConfigError, HandoffConfig, Outcome, Route, ShardState, ShardTable,
    MAX_SHARDS,
};
pub use key::{key_hash, shard_for_key, KEY_HASH_SEED};
pub use majority::KeepMajority;
pub use member::MemberId;
pub use notice::{
    recipient_id, NoticeError, ReleaseNotice, MAX_NOTICE_LEN, NOTICE_MAGIC, NOTICE_VERSION,
};
pub use view::{format_view_id, view_id, Health, Peer, EPOCH_TAG, SETTLED_TAG};
