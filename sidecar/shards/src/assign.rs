//! Shard ownership: rendezvous hashing with bounded, balanced load.
//!
//! Every member computes the same [`Assignment`] from the same member list,
//! so no coordination is needed to agree on owners. The algorithm:
//!
//! 1. Members are sorted by id and deduplicated (input order is irrelevant).
//! 2. Each (member, shard) pair has a weight
//!    `xxh3_64(shard as u32 little-endian, seed = xxh3_64(member id))`.
//! 3. Pairs are taken greedily, heaviest first (ties: lower shard, then lower
//!    member id). A pair is accepted when its shard has no owner yet and its
//!    member has room: fewer than `floor(shards / members)` shards, or exactly
//!    that many while some of the `shards mod members` extra places are left
//!    (each accepted extra uses one up).
//!
//! So every load is `floor` or `ceil` of `shards / members`: the cap
//! `ceil(shards / members)` holds and no member idles while others carry
//! two loads. Step 3 is a capacitated stable matching: a shard goes to the
//! member it weighs most with among those with room when its turn comes, so
//! a join or leave mostly moves the shards it must
//! (`docs/benchmarks/shards.md` measures how many more).
//! It is computed with a heap holding each shard's best remaining
//! candidate: about `shards × members` hashes plus a rescan of the members
//! each time a candidate filled up.

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
fn best(shard: u32, seeds: &[u64], room: &Room) -> Option<Candidate> {
    let mut found: Option<Candidate> = None;
    for (i, &seed) in seeds.iter().enumerate() {
        if room.full(i) {
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

/// The room left on members, shared by all of them.
struct Room {
    /// `floor(shards / members)`: every member may take this many.
    floor: u32,
    /// Extra places (one shard above `floor`) still free.
    extra: u32,
    /// Shards per member so far.
    load: Vec<u32>,
}

impl Room {
    /// Whether `member` can take no more shards. Once true, stays true.
    fn full(&self, member: usize) -> bool {
        let load = self.load[member];
        load > self.floor || (load == self.floor && self.extra == 0)
    }

    fn take(&mut self, member: usize) {
        if self.load[member] == self.floor {
            self.extra -= 1;
        }
        self.load[member] += 1;
    }
}

/// Capacitated greedy matching in descending weight order.
fn place(shards: u32, members: &[MemberId]) -> Vec<u32> {
    let n = members.len() as u32;
    let seeds: Vec<u64> = members
        .iter()
        .map(|m| xxh3_64(m.as_str().as_bytes()))
        .collect();
    let mut room = Room {
        floor: shards / n,
        extra: shards % n,
        load: vec![0; members.len()],
    };
    let mut owners = vec![u32::MAX; shards as usize];
    let mut heap: BinaryHeap<Candidate> =
        (0..shards).filter_map(|s| best(s, &seeds, &room)).collect();
    while let Some(c) = heap.pop() {
        let m = c.member as usize;
        if !room.full(m) {
            room.take(m);
            owners[c.shard as usize] = c.member;
        } else if let Some(next) = best(c.shard, &seeds, &room) {
            // Its member filled up meanwhile; full members stay full, so the
            // best member with room now is its next pair in weight order.
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
