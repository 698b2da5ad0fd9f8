//! The fixed, documented key → shard function.
//!
//! Apps in any language must be able to compute the same shard for a key, and
//! the mapping must never change between versions (it decides where data
//! lives), so it is pinned by golden-value tests. See `docs/sharding.md`.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of the key hash; part of the wire contract, never change it.
pub const KEY_HASH_SEED: u64 = 0;

/// The 64-bit hash of a shard key: XXH3-64 with seed 0 of the key bytes.
///
/// Exposed so tools and tests can show the hash next to the shard.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, KEY_HASH_SEED)
}

/// The shard a key belongs to: `xxh3_64(key, seed 0) % shards`.
///
/// This is the one routing contract shared with apps; it never changes.
/// `shards == 0` is invalid configuration (config validation rejects it);
/// it returns shard 0 rather than panicking on a division by zero.
pub fn shard_for_key(key: &[u8], shards: u32) -> u32 {
    if shards == 0 {
        return 0;
    }
    // The remainder is < shards <= u32::MAX, so the cast is lossless.
    (key_hash(key) % u64::from(shards)) as u32
}

#[cfg(test)]
mod tests;
