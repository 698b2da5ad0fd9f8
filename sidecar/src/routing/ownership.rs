//! Shard ownership as names: a thin adapter over `shardmesh-shards`.

/// The owner name of each shard for a member list (order does not matter).
pub fn assign<'a>(shards: u32, members: &[&'a str]) -> Vec<Option<&'a str>> {
    if members.is_empty() {
        return vec![None; shards as usize];
    }
    let mut sorted: Vec<&'a str> = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    // Placeholder until shardmesh-shards' rendezvous assignment lands: balanced modulo.
    (0..shards)
        .map(|s| Some(sorted[s as usize % sorted.len()]))
        .collect()
}
