//! Golden values pin the key → shard function forever. They were checked
//! against the reference C implementation (Python `xxhash.xxh3_64_intdigest`).
//! The keys cover every XXH3 length path: 0, 1-3, 4-8, 9-16, 17-128, 129-240, >240.

use super::*;

/// (key, xxh3-64 seed 0, shard of 10, shard of 30, shard of 1024)
const GOLDEN: &[(&str, u64, u32, u32, u32)] = &[
    ("", 0x2d06_8005_38d3_94c2, 8, 28, 194),
    ("a", 0xe6c6_32b6_1e96_4e1f, 9, 19, 543),
    ("alice", 0x4da1_0dd6_1a01_16b0, 0, 0, 688),
    ("user:7", 0x0067_b227_f59e_e6b4, 8, 8, 692),
    ("account-42", 0xfe91_6896_f1b4_ecbf, 1, 1, 191),
    ("héllo", 0x6a45_b79a_7b54_9b1f, 5, 5, 799),
    (
        "0123456789abcdef0123456789abcdef",
        0x0112_1d5b_6c0a_c055,
        9,
        9,
        85,
    ),
];

#[test]
fn key_hash_matches_reference_xxh3() {
    for &(key, hash, ..) in GOLDEN {
        assert_eq!(key_hash(key.as_bytes()), hash, "key {key:?}");
    }
}

#[test]
fn shard_for_key_is_hash_mod_shards() {
    for &(key, _, s10, s30, s1024) in GOLDEN {
        assert_eq!(shard_for_key(key.as_bytes(), 10), s10, "key {key:?} of 10");
        assert_eq!(shard_for_key(key.as_bytes(), 30), s30, "key {key:?} of 30");
        assert_eq!(
            shard_for_key(key.as_bytes(), 1024),
            s1024,
            "key {key:?} of 1024"
        );
    }
}

#[test]
fn long_keys_match_reference_xxh3() {
    let k200 = "x".repeat(200);
    let k1000 = "k".repeat(1000);
    assert_eq!(key_hash(k200.as_bytes()), 0x50ef_124f_b1e4_de53);
    assert_eq!(shard_for_key(k200.as_bytes(), 1024), 595);
    assert_eq!(key_hash(k1000.as_bytes()), 0x308c_e2f4_2106_6779);
    assert_eq!(shard_for_key(k1000.as_bytes(), 30), 21);
}

#[test]
fn one_shard_and_zero_shards_give_shard_zero() {
    assert_eq!(shard_for_key(b"anything", 1), 0);
    assert_eq!(shard_for_key(b"anything", 0), 0);
}

#[test]
fn shard_is_always_in_range() {
    for shards in [1u32, 2, 3, 7, 64, 65_536, u32::MAX] {
        for i in 0..200u32 {
            assert!(shard_for_key(&i.to_le_bytes(), shards) < shards);
        }
    }
}
