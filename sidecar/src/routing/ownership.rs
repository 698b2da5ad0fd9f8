//! Shard ownership as names: a thin adapter over `shardmesh-shards`'
//! bounded-load rendezvous assignment.

use shardmesh_shards::MemberId;

/// The owner name of each shard for a member list (order does not matter;
/// duplicates are ignored).
pub fn assign<'a>(shards: u32, members: &[&'a str]) -> Vec<Option<&'a str>> {
    let ids: Vec<MemberId> = members.iter().map(MemberId::new).collect();
    let assignment = shardmesh_shards::assign(shards, &ids);
    (0..shards)
        .map(|s| {
            assignment
                .owner(s)
                .and_then(|id| members.iter().copied().find(|m| *m == id.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_has_one_owner_and_order_does_not_matter() {
        let a = assign(30, &["b", "a", "c"]);
        let b = assign(30, &["c", "b", "a"]);
        assert_eq!(a, b);
        assert!(a.iter().all(Option::is_some));
        for m in ["a", "b", "c"] {
            assert_eq!(a.iter().filter(|o| **o == Some(m)).count(), 10);
        }
        assert!(assign(5, &[]).iter().all(Option::is_none));
    }
}
