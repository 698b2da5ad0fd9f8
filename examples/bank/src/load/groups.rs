//! Success by shard group: a fault scenario names the shards of the pod it
//! breaks (`--watch-shards`), and the report counts keyed requests for those
//! shards apart from keyed requests for every other shard (whose owners
//! stayed alive) and from keyless requests (transfers, served by any pod).
//! "Requests for shards whose owner is alive succeed" is then a number.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::load::client::Sent;
use crate::load::workload::{Kind, Planned};
use crate::shard_key::shard_of;

/// The shards `--watch-shards N:S1,S2,...` names, among `N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Shard count of the service.
    pub shards: u32,
    /// The watched shards.
    pub watched: BTreeSet<u32>,
}

/// Counts of one group.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Group {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Success rate (1.0 without requests), set by [`Group::reported`].
    pub success_rate: f64,
    /// Failures by `x-shardmesh-error` reason (or client-side cause).
    pub by_reason: BTreeMap<String, u64>,
}

impl Watch {
    /// Parses `N:S1,S2,...` (an empty list watches nothing).
    pub fn parse(v: &str) -> Result<Self, String> {
        let bad = || format!("--watch-shards {v}: expected N:S1,S2,... with every S < N");
        let (n, list) = v.split_once(':').ok_or_else(bad)?;
        let shards: u32 = n.parse().map_err(|_| bad())?;
        if shards == 0 || shards > 65_536 {
            return Err(bad());
        }
        let mut watched = BTreeSet::new();
        for s in list.split(',').filter(|s| !s.is_empty()) {
            let s: u32 = s.parse().map_err(|_| bad())?;
            if s >= shards {
                return Err(bad());
            }
            watched.insert(s);
        }
        Ok(Self { shards, watched })
    }

    /// The group of a request: `keyless`, `watched` or `others`.
    pub fn group(&self, p: &Planned, prefix: &str) -> &'static str {
        if p.kind == Kind::Transfer {
            return "keyless";
        }
        let key = format!("{prefix}-{}", p.account);
        if self.watched.contains(&shard_of(&key, self.shards)) {
            "watched"
        } else {
            "others"
        }
    }
}

impl Group {
    /// Counts one request.
    pub fn record(&mut self, sent: &Sent) {
        self.requests += 1;
        if sent.failed {
            self.failed += 1;
            // A failure below HTTP (the client's own timeout, no
            // connection) has no mesh reason: say so, apart from the mesh's
            // `timeout` answer.
            let reason = match (sent.status.parse::<u16>(), &sent.reason) {
                (Ok(_), Some(r)) => r.clone(),
                (Ok(status), None) => format!("app-{status}"),
                (Err(_), _) => format!("client-{}", sent.status),
            };
            *self.by_reason.entry(reason).or_default() += 1;
        }
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Group) {
        self.requests += other.requests;
        self.failed += other.failed;
        for (k, v) in &other.by_reason {
            *self.by_reason.entry(k.clone()).or_default() += v;
        }
    }

    /// The counts with their success rate, for the report.
    pub fn reported(&self) -> Self {
        Self {
            success_rate: success_rate(self.failed, self.requests),
            ..self.clone()
        }
    }
}

/// `1 - failed / requests`, and 1.0 without requests.
pub fn success_rate(failed: u64, requests: u64) -> f64 {
    if requests == 0 {
        1.0
    } else {
        1.0 - failed as f64 / requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_bad_lists() {
        let w = Watch::parse("30:1,2,29").unwrap();
        assert_eq!(w.shards, 30);
        assert_eq!(w.watched, BTreeSet::from([1, 2, 29]));
        assert!(Watch::parse("30:").unwrap().watched.is_empty());
        for bad in ["30", "0:1", "30:30", "x:1", "30:1,,a"] {
            assert!(Watch::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_keyed_requests_by_the_shard_of_their_account() {
        let plan = |kind, account| Planned {
            index: 0,
            kind,
            account,
            to: 0,
            amount: 1,
        };
        let key_shard = shard_of("acct-7", 30);
        let w = Watch::parse(&format!("30:{key_shard}")).unwrap();
        assert_eq!(w.group(&plan(Kind::Deposit, 7), "acct"), "watched");
        assert_eq!(w.group(&plan(Kind::Transfer, 7), "acct"), "keyless");
        let other = (0..100)
            .find(|a| shard_of(&format!("acct-{a}"), 30) != key_shard)
            .unwrap();
        assert_eq!(w.group(&plan(Kind::Balance, other), "acct"), "others");
    }
}
