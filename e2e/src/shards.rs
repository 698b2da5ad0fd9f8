//! Shard views for fault scenarios: which shards a pod serves, and a probe
//! that every key is served again (one account per shard, read through the
//! mesh), so recovery after a fault is a measured time, not a guess.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::{http, poll};

/// `HandoffConfig::dead_owner_margin` at the default 1 s probe interval:
/// part of every recovery bound after a member is declared dead.
pub const DEAD_OWNER_MARGIN: Duration = Duration::from_secs(2);

/// The shards `admin`'s sidecar serves now.
pub fn served(admin: &str) -> BTreeSet<u32> {
    http::admin_json(admin, "/debug/shards")
        .and_then(|d| d["shards"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|s| s["state"] == "serving")
        .filter_map(|s| s["shard"].as_u64().and_then(|v| u32::try_from(v).ok()))
        .collect()
}

/// The shards `pod` owns when `members` are the service's owners (the
/// sidecars' own pure assignment), to name a fault's shards in advance.
pub fn owned_by(shards: u32, members: &[&str], pod: &str) -> BTreeSet<u32> {
    let ids: Vec<shardmesh_shards::MemberId> = members
        .iter()
        .map(|m| shardmesh_shards::MemberId::new(*m))
        .collect();
    let a = shardmesh_shards::assign(shards, &ids);
    (0..shards)
        .filter(|s| a.owner(*s).is_some_and(|o| o.as_str() == pod))
        .collect()
}

/// `N:S1,S2,...` for `bank-load --watch-shards`.
pub fn watch_arg(shards: u32, watched: &BTreeSet<u32>) -> String {
    let list: Vec<String> = watched.iter().map(u32::to_string).collect();
    format!("{shards}:{}", list.join(","))
}

/// One account name per shard (`probe-K` keys), found by hashing like the mesh.
pub fn one_key_per_shard(shards: u32) -> Vec<String> {
    let mut keys: Vec<Option<String>> = vec![None; shards as usize];
    let mut found = 0;
    for i in 0u64.. {
        let key = format!("probe-{i}");
        let s = (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(shards)) as usize;
        if keys[s].is_none() {
            keys[s] = Some(key);
            found += 1;
            if found == shards {
                break;
            }
        }
    }
    keys.into_iter().flatten().collect()
}

/// Whether a balance read of every key through `outbound` answers 200 now.
pub fn all_served(outbound: &str, keys: &[String]) -> bool {
    keys.iter().all(|k| {
        let r = http::request(
            outbound,
            "GET",
            &format!("/accounts/{k}"),
            &[("x-shardmesh-service", "bank")],
            "",
            Duration::from_secs(5),
        );
        r.status == 200
    })
}

/// Time from `since` until every key is served through every `outbound`,
/// or `None` after `timeout`.
pub fn served_again(
    outbounds: &[String],
    keys: &[String],
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    poll(timeout, || {
        outbounds
            .iter()
            .all(|o| all_served(o, keys))
            .then(|| since.elapsed())
    })
}
