use proptest::prelude::*;

use super::*;

fn ids(prefix: &str, n: usize) -> Vec<MemberId> {
    (0..n)
        .map(|i| MemberId::new(format!("{prefix}-{i}")))
        .collect()
}

fn check_invariants(a: &Assignment, shards: u32) {
    assert_eq!(a.shards(), shards);
    let cap = shards.div_ceil(a.members().len() as u32);
    for s in 0..shards {
        assert!(a.owner(s).is_some(), "shard {s} has no owner");
    }
    let loads = a.loads();
    assert_eq!(
        loads.iter().sum::<u32>(),
        shards,
        "every shard owned exactly once"
    );
    assert!(
        loads.iter().all(|&l| l <= cap),
        "load {loads:?} above cap {cap}"
    );
}

#[test]
fn no_members_means_no_owners() {
    let a = assign(8, &[]);
    assert_eq!(a.owner(0), None);
    assert_eq!(a.shards(), 0);
}

#[test]
fn one_member_owns_everything() {
    let m = ids("bank", 1);
    let a = assign(10, &m);
    assert!((0..10).all(|s| a.owner(s) == Some(&m[0])));
    assert_eq!(a.shards_of(&m[0]).count(), 10);
}

#[test]
fn duplicates_count_once() {
    let m = ids("bank", 3);
    let dup = [m.clone(), m.clone()].concat();
    assert_eq!(assign(30, &dup), assign(30, &m));
}

#[test]
fn out_of_range_shard_has_no_owner() {
    let a = assign(4, &ids("bank", 2));
    assert_eq!(a.owner(4), None);
}

#[test]
fn unknown_member_owns_nothing() {
    let a = assign(4, &ids("bank", 2));
    assert_eq!(a.shards_of(&MemberId::new("stranger")).count(), 0);
}

#[test]
fn more_members_than_shards_gives_one_each_to_some() {
    let m = ids("bank", 5);
    let a = assign(3, &m);
    check_invariants(&a, 3);
    assert_eq!(a.loads().iter().filter(|&&l| l == 0).count(), 2);
}

/// Pins the ownership function: every member of a rolling upgrade must
/// compute the same owners, so the algorithm must not drift by accident.
#[test]
fn ownership_is_pinned() {
    let a = assign(12, &ids("bank", 3));
    let owners: Vec<&str> = (0..12)
        .filter_map(|s| a.owner(s))
        .map(|m| m.as_str())
        .collect();
    assert_eq!(owners, PINNED_OWNERS);
    // With extra places (7 = 2 × 3 + 1) and with fewer shards than members.
    let owners_of = |shards: u32| {
        let a = assign(shards, &ids("bank", 3));
        (0..shards)
            .filter_map(|s| a.owner(s).map(|m| m.as_str().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        owners_of(7),
        ["bank-2", "bank-1", "bank-0", "bank-0", "bank-1", "bank-0", "bank-2"]
    );
    assert_eq!(owners_of(2), ["bank-2", "bank-0"]);
}

const PINNED_OWNERS: [&str; 12] = [
    "bank-2", "bank-2", "bank-0", "bank-0", "bank-1", "bank-0", "bank-2", "bank-0", "bank-1",
    "bank-1", "bank-1", "bank-2",
];

fn members_strategy() -> impl Strategy<Value = Vec<MemberId>> {
    prop::collection::btree_set("[a-z]{1,6}-[0-9]{1,3}", 1..12)
        .prop_map(|set| set.into_iter().map(MemberId::from).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_owners_for_any_member_order(
        members in members_strategy(),
        shards in 1u32..400,
        seed in any::<u64>(),
    ) {
        let mut shuffled = members.clone();
        // A deterministic shuffle driven by the generated seed.
        shuffled.sort_by_key(|m| xxh3_64_with_seed(m.as_str().as_bytes(), seed));
        prop_assert_eq!(assign(shards, &members), assign(shards, &shuffled));
    }

    #[test]
    fn every_shard_owned_once_within_cap(members in members_strategy(), shards in 1u32..400) {
        check_invariants(&assign(shards, &members), shards);
    }

    /// The 1.5 × bound, in the regime where this algorithm meets it
    /// (at least 100 shards per member, up to 10 members); the benchmark in
    /// docs/benchmarks/shards.md reports the rest of the range honestly.
    #[test]
    fn join_and_leave_move_at_most_one_and_a_half_times_the_minimum(
        members in prop::collection::btree_set("[a-z]{1,6}-[0-9]{1,3}", 4..11),
        per_member in 100u32..200,
        pick in any::<prop::sample::Index>(),
    ) {
        let all: Vec<MemberId> = members.into_iter().map(MemberId::from).collect();
        let i = pick.index(all.len());
        let mut without = all.clone();
        let changed = without.remove(i);
        let shards = per_member * without.len() as u32;
        let small = assign(shards, &without);
        let big = assign(shards, &all);
        check_invariants(&big, shards);
        // Join: `changed` arrives. Leave: `changed` departs.
        let join_min = small.min_moves(&all);
        let join = big.moved(&small);
        prop_assert!(2 * join <= 3 * join_min, "join of {changed} moved {join}, min {join_min}");
        let leave_min = big.min_moves(&without);
        let leave = small.moved(&big);
        prop_assert!(2 * leave <= 3 * leave_min, "leave of {changed} moved {leave}, min {leave_min}");
    }
}
