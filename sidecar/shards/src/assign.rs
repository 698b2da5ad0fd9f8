//! Shard ownership: rendezvous hashing with bounded load.
//!
//! Every member computes the same [`Assignment`] from the same member list,
//! so no coordination is needed to agree on owners. The algorithm:
//!
//! 1. Members are sorted by id and deduplicated (input order is irrelevant).
//! 2. Each (member, shard) pair has a weight
//!    `xxh3_64(shard as u32 little-endian, seed = xxh3_64(member id))`.
//! 3. Each shard goes to its heaviest member (plain rendezvous).
//! 4. A member holding more than `cap = ceil(shards / members)` keeps its
//!    `cap` heaviest shards; the overflow is placed heaviest pair first
//!    (ties: lower shard, then lower member id) on the heaviest member that
//!    still has room.
//!
//! When rendezvous alone respects the cap, the result is plain rendezvous
//! and a join or leave moves the minimum. Otherwise only the overflow is
//! re-placed; `docs/benchmarks/shards.md` measures the extra movement.
//! Cost: `shards × members` hashes plus a heap operation per overflow shard.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::MemberId;

/// Owner of every shard of one service, computed by [`assign`].
///
/// Exists so the router and the handoff state machine ask one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Members, sorted by id, deduplicated.
    members: Vec<MemberId>,
    /// `owners[shard]` indexes `members`; empty when there are no members.
    owners: Vec<u32>,
}

/// Computes the owner of every shard `0..shards` among `members`.
///
/// The caller passes the members that should own shards: alive **and
/// suspect** members of the service (a suspect keeps its shards, so a
/// false suspicion moves nothing); dead and left members are omitted.
/// The result does not depend on the order of `members`; duplicates count
/// once. With no members, no shard has an owner.
pub fn assign(shards: u32, members: &[MemberId]) -> Assignment {
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return Assignment {
            members: sorted,
            owners: Vec::new(),
        };
    }
    let owners = place(shards, &sorted);
    Assignment {
        members: sorted,
        owners,
    }
}

/// The weight of `member` (its seed is `xxh3_64(id)`) for `shard`.
fn weight(member_seed: u64, shard: u32) -> u64 {
    xxh3_64_with_seed(&shard.to_le_bytes(), member_seed)
}

/// A shard's best remaining candidate; the heap pops the largest.
#[derive(PartialEq, Eq)]
struct Candidate {
    weight: u64,
    shard: u32,
    member: u32,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Larger weight first; on ties the lower shard, then the lower member
        // index (= lower id, members are sorted) comes first.
        self.weight
            .cmp(&other.weight)
            .then_with(|| other.shard.cmp(&self.shard))
            .then_with(|| other.member.cmp(&self.member))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best member with room for `shard`, by weight then lower index.
fn best(shard: u32, seeds: &[u64], load: &[u32], cap: u32) -> Option<Candidate> {
    let mut found: Option<Candidate> = None;
    for (i, &seed) in seeds.iter().enumerate() {
        if load[i] >= cap {
            continue;
        }
        let w = weight(seed, shard);
        // Strictly greater keeps the lower index on equal weights.
        if found.as_ref().is_none_or(|c| w > c.weight) {
            found = Some(Candidate {
                weight: w,
                shard,
                member: i as u32,
            });
        }
    }
    found
}

/// Rendezvous owners, then the overflow of overloaded members re-placed.
fn place(shards: u32, members: &[MemberId]) -> Vec<u32> {
    let n = members.len();
    let cap = shards.div_ceil(n as u32);
    let seeds: Vec<u64> = members
        .iter()
        .map(|m| xxh3_64(m.as_str().as_bytes()))
        .collect();
    let mut load = vec![0u32; n];
    // Phase 1: plain rendezvous; each member's shards with their weights.
    let mut won: Vec<Vec<(u64, u32)>> = vec![Vec::new(); n];
    for s in 0..shards {
        if let Some(c) = best(s, &seeds, &load, u32::MAX) {
            won[c.member as usize].push((c.weight, s));
        }
    }
    // Phase 2: a member keeps its `cap` heaviest shards; the rest overflow.
    let mut owners = vec![u32::MAX; shards as usize];
    let mut overflow = Vec::new();
    for (m, list) in won.iter_mut().enumerate() {
        list.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (rank, &(_, s)) in list.iter().enumerate() {
            if rank < cap as usize {
                owners[s as usize] = m as u32;
                load[m] += 1;
            } else {
                overflow.push(s);
            }
        }
    }
    // Phase 3: overflow goes heaviest pair first to the best member with room.
    let mut heap: BinaryHeap<Candidate> = overflow
        .iter()
        .filter_map(|&s| best(s, &seeds, &load, cap))
        .collect();
    while let Some(c) = heap.pop() {
        let m = c.member as usize;
        if load[m] < cap {
            load[m] += 1;
            owners[c.shard as usize] = c.member;
        } else if let Some(next) = best(c.shard, &seeds, &load, cap) {
            // Its member filled up meanwhile; members never empty again, so
            // the best member with room now is its next pair in weight order.
            heap.push(next);
        }
    }
    owners
}

// === impl Assignment ===

impl Assignment {
    /// Number of shards of the service.
    pub fn shards(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The members ownership was computed over, sorted by id.
    pub fn members(&self) -> &[MemberId] {
        &self.members
    }

    /// The owner of `shard`; `None` when out of range or there are no members.
    pub fn owner(&self, shard: u32) -> Option<&MemberId> {
        let idx = *self.owners.get(shard as usize)?;
        self.members.get(idx as usize)
    }

    /// The shards `member` owns, ascending.
    pub fn shards_of<'a>(&'a self, member: &MemberId) -> impl Iterator<Item = u32> + 'a {
        let idx = self.members.binary_search(member).ok().map(|i| i as u32);
        self.owners
            .iter()
            .enumerate()
            .filter(move |(_, &o)| Some(o) == idx)
            .map(|(s, _)| s as u32)
    }

    /// Shards owned by each member, in [`Self::members`] order.
    pub fn loads(&self) -> Vec<u32> {
        let mut loads = vec![0u32; self.members.len()];
        for &o in &self.owners {
            if let Some(l) = loads.get_mut(o as usize) {
                *l += 1;
            }
        }
        loads
    }

    /// Number of shards whose owner differs between `self` and `other`.
    ///
    /// Used to measure how much a membership change moves.
    pub fn moved(&self, other: &Assignment) -> u32 {
        (0..self.shards().max(other.shards()))
            .filter(|&s| self.owner(s) != other.owner(s))
            .count() as u32
    }

    /// Fewest shard moves from `self` to any balanced assignment over
    /// `after` (every load within floor..=ceil of shards/members): leavers'
    /// shards must move, stayers above the new cap must shed, and each
    /// joiner needs its floor share.
    ///
    /// The yardstick for [`Self::moved`] in tests and the benchmark.
    pub fn min_moves(&self, after: &[MemberId]) -> u32 {
        let shards = self.shards();
        let mut after = after.to_vec();
        after.sort();
        after.dedup();
        let n = after.len() as u32;
        if n == 0 {
            return 0;
        }
        let cap = shards.div_ceil(n);
        let mut must = 0;
        for (m, l) in self.members.iter().zip(self.loads()) {
            must += if after.binary_search(m).is_ok() {
                l.saturating_sub(cap)
            } else {
                l
            };
        }
        let joiners = after
            .iter()
            .filter(|m| self.members.binary_search(m).is_err())
            .count() as u32;
        must.max(joiners * (shards / n))
    }
}

#[cfg(test)]
mod tests;
