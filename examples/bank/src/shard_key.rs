//! Key → shard mapping used when the app runs without a sidecar.
//!
//! The mesh maps a key to a shard as XXH3-64 (seed 0) of the key bytes modulo
//! the shard count; in `--standalone` mode the app owns every shard and must
//! compute the same function itself so that its logs are interchangeable with
//! the ones written under a sidecar.

/// The shard of `key` among `shards` shards (XXH3-64, seed 0, mod `shards`).
///
/// `shards` must be non-zero; callers validate it once at start.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    // The remainder is < shards <= u32::MAX, so the narrowing cannot lose bits.
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % shards) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_stable_and_in_range() {
        // Known XXH3-64 value of the empty input (seed 0), from the reference implementation.
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        for key in ["alice", "bob", "acct-17", ""] {
            let s = shard_of(key, 30);
            assert!(s < 30);
            assert_eq!(s, shard_of(key, 30));
        }
        assert_eq!(shard_of("anything", 1), 0);
    }
}
