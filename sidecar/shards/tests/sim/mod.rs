//! A tiny deterministic simulation of several members' shard tables: an
//! in-memory gossip (views with tags, broadcast notices), an app that
//! answers callbacks, partitions, and invariant checks after every step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use shardmesh_shards::{
    Action, Callback, HandoffConfig, Health, MemberId, Outcome, Peer, ReleaseNotice, ShardState,
    ShardTable,
};

/// A message in flight to one member.
enum Msg {
    Notice(ReleaseNotice),
    Done(Callback, u32, u64),
    Drained(u32),
}

/// The simulated cluster of one service.
pub struct Sim {
    pub now: Instant,
    /// The simulated wall clock's zero.
    t0: Instant,
    pub cfg: HandoffConfig,
    /// Running members' tables.
    pub tables: BTreeMap<String, ShardTable>,
    /// Global truth: each member's health as the others would detect it.
    pub health: BTreeMap<String, Health>,
    /// Partition side of each member; members talk only within a side.
    pub side: BTreeMap<String, u8>,
    /// Health to show for members across the partition.
    pub across: Health,
    queue: VecDeque<(String, Msg)>,
    /// App-level holder of each shard: (member, epoch), between acquire and release.
    pub app_holder: BTreeMap<u32, (String, u64)>,
    /// Every epoch acquired per shard, in order.
    pub epochs: BTreeMap<u32, Vec<u64>>,
    /// Every app callback, in order: (member, kind, shard, epoch).
    pub calls: Vec<(String, Callback, u32, u64)>,
    /// Actions other than callbacks, for scenario assertions.
    pub log: Vec<(String, Action)>,
    /// Fail every n-th app callback (the state machine must retry).
    pub fail_every: Option<usize>,
    /// Lose every gossiped release notice (the barrier must cover).
    pub drop_notices: bool,
    /// App callbacks answered so far.
    answered: usize,
}

impl Sim {
    pub fn new(shards: u32) -> Self {
        let mut cfg = HandoffConfig::new("bank", shards);
        cfg.stable_after = Duration::from_secs(10);
        let now = Instant::now();
        Self {
            now,
            t0: now,
            cfg,
            tables: BTreeMap::new(),
            health: BTreeMap::new(),
            side: BTreeMap::new(),
            across: Health::Dead,
            queue: VecDeque::new(),
            app_holder: BTreeMap::new(),
            epochs: BTreeMap::new(),
            calls: Vec::new(),
            log: Vec::new(),
            fail_every: None,
            drop_notices: false,
            answered: 0,
        }
    }

    /// Starts a member (it joins with the current view).
    pub fn start(&mut self, id: &str) {
        let table = ShardTable::new(MemberId::new(id), self.cfg_now()).unwrap();
        self.tables.insert(id.to_string(), table);
        self.health.insert(id.to_string(), Health::Alive);
        self.side.insert(id.to_string(), 0);
    }

    /// kill -9: the table disappears; others see it dead.
    pub fn kill(&mut self, id: &str) {
        self.tables.remove(id);
        self.health.insert(id.to_string(), Health::Dead);
        self.app_holder.retain(|_, (m, _)| m != id);
    }

    /// The settings a member starting now gets: the wall clock as floor.
    fn cfg_now(&self) -> HandoffConfig {
        let mut cfg = self.cfg.clone();
        let wall = (self.now - self.t0).as_micros();
        cfg.epoch_floor = 1_000_000 + u64::try_from(wall).unwrap_or(u64::MAX);
        cfg
    }

    /// kill -9 and an immediate restart under the same name, faster than
    /// failure detection: the others never see it dead.
    pub fn restart(&mut self, id: &str) {
        self.app_holder.retain(|_, (m, _)| m != id);
        // A restarted process gossips itself alive again (a new
        // incarnation), even if the old one was leaving.
        self.health.insert(id.to_string(), Health::Alive);
        let table = ShardTable::new(MemberId::new(id), self.cfg_now()).unwrap();
        self.tables.insert(id.to_string(), table);
    }

    /// Graceful shutdown: the member gossips `leaving` and starts handing
    /// its shards off.
    pub fn leave(&mut self, id: &str) -> Vec<Action> {
        self.health.insert(id.to_string(), Health::Leaving);
        let now = self.now;
        let Some(t) = self.tables.get_mut(id) else {
            return Vec::new();
        };
        let actions = t.leave(now);
        self.handle(id, actions.clone());
        actions
    }

    /// The view member `me` has now.
    pub fn view_of(&self, me: &str) -> Vec<Peer> {
        let my_side = self.side.get(me).copied().unwrap_or(0);
        self.health
            .iter()
            .map(|(id, &h)| {
                let reachable = self.side.get(id).copied().unwrap_or(0) == my_side;
                // Nothing crosses a partition, not even a graceful leave.
                let health = if reachable || h == Health::Dead {
                    h
                } else {
                    self.across
                };
                let mut p = Peer::new(id.as_str(), health);
                if let Some(t) = self.tables.get(id) {
                    p.epoch = t.epoch_tag().parse().unwrap_or(0);
                    p.settled = t
                        .settled_tag()
                        .and_then(|v| u64::from_str_radix(&v, 16).ok());
                }
                p
            })
            .collect()
    }

    /// Feeds one member its view and handles the resulting actions.
    pub fn feed(&mut self, id: &str) -> Vec<Action> {
        let view = self.view_of(id);
        let now = self.now;
        let Some(t) = self.tables.get_mut(id) else {
            return Vec::new();
        };
        let actions = t.on_membership(now, &view);
        self.handle(id, actions.clone());
        actions
    }

    /// Gossip and messages until nothing changes; asserts invariants after
    /// every step. Returns the number of rounds.
    pub fn settle(&mut self) -> usize {
        for round in 0..200 {
            self.now += Duration::from_millis(10);
            let before = self.fingerprint();
            let ids: Vec<String> = self.tables.keys().cloned().collect();
            // Rotate the order so views arrive skewed differently each round.
            let k = round % ids.len().max(1);
            for id in ids[k..].iter().chain(&ids[..k]) {
                self.feed(id);
                self.deliver();
            }
            let ids: Vec<String> = self.tables.keys().cloned().collect();
            for id in ids {
                let now = self.now;
                if let Some(t) = self.tables.get_mut(&id) {
                    let actions = t.tick(now);
                    // A timer never asks to fire again at once (no busy loop).
                    let next = t.next_deadline();
                    assert!(
                        next.is_none_or(|d| d > now),
                        "{id}: deadline {next:?} not after tick"
                    );
                    self.handle(&id, actions);
                }
                self.deliver();
            }
            if self.queue.is_empty() && before == self.fingerprint() && round > 0 {
                // Quiet: jump to a pending callback retry or dead-owner
                // margin, if any.
                let soon = self.now + self.cfg.retry_after.max(self.cfg.dead_owner_margin);
                match self.tables.values().filter_map(|t| t.next_deadline()).min() {
                    Some(at) if at <= soon => self.now = self.now.max(at),
                    _ => return round,
                }
            }
        }
        panic!("simulation did not settle");
    }

    /// Delivers queued messages one by one.
    fn deliver(&mut self) {
        while let Some((to, msg)) = self.queue.pop_front() {
            let now = self.now;
            let Some(t) = self.tables.get_mut(&to) else {
                continue;
            };
            let actions = match msg {
                Msg::Notice(n) => t.on_release_notice(now, &n),
                Msg::Done(kind, shard, epoch) => {
                    self.answered += 1;
                    let fail = self
                        .fail_every
                        .is_some_and(|n| self.answered.is_multiple_of(n));
                    let outcome = if fail { Outcome::Failed } else { Outcome::Ok };
                    if kind == Callback::Release
                        && !fail
                        && self.app_holder.get(&shard) == Some(&(to.clone(), epoch))
                    {
                        self.app_holder.remove(&shard);
                    }
                    t.callback_done(now, kind, shard, epoch, outcome)
                }
                Msg::Drained(shard) => t.drained(now, shard),
            };
            self.handle(&to, actions);
        }
    }

    fn handle(&mut self, id: &str, actions: Vec<Action>) {
        for a in actions {
            match &a {
                Action::CallAcquire { shard, epoch } => {
                    let retry = self.app_holder.get(shard) == Some(&(id.to_string(), *epoch));
                    if let Some((holder, e)) = self.app_holder.get(shard).filter(|_| !retry) {
                        panic!("{id} acquires shard {shard}@{epoch} while {holder}@{e} holds it");
                    }
                    let seen = self.epochs.entry(*shard).or_default();
                    if let Some(last) = seen.last().filter(|_| !retry) {
                        assert!(epoch > last, "shard {shard}: epoch {epoch} after {last}");
                    }
                    if !retry {
                        seen.push(*epoch);
                    }
                    self.app_holder.insert(*shard, (id.to_string(), *epoch));
                    self.calls
                        .push((id.to_string(), Callback::Acquire, *shard, *epoch));
                    self.queue
                        .push_back((id.to_string(), Msg::Done(Callback::Acquire, *shard, *epoch)));
                }
                Action::CallRelease { shard, epoch } => {
                    self.calls
                        .push((id.to_string(), Callback::Release, *shard, *epoch));
                    self.queue
                        .push_back((id.to_string(), Msg::Done(Callback::Release, *shard, *epoch)));
                }
                Action::Drain { shard } => {
                    self.queue.push_back((id.to_string(), Msg::Drained(*shard)));
                }
                Action::Broadcast(_) if self.drop_notices => {}
                Action::Broadcast(n) => {
                    let my_side = self.side.get(id).copied();
                    for to in self.tables.keys() {
                        if to != id && self.side.get(to).copied() == my_side {
                            self.queue.push_back((to.clone(), Msg::Notice(n.clone())));
                        }
                    }
                }
                _ => self.log.push((id.to_string(), a.clone())),
            }
            self.check_one_server();
        }
    }

    /// The safety invariant: never two members serving one shard.
    pub fn check_one_server(&self) {
        for s in 0..self.cfg.shards {
            let servers: Vec<&String> = self
                .tables
                .iter()
                .filter(|(_, t)| matches!(t.state(s), ShardState::Serving { .. }))
                .map(|(id, _)| id)
                .collect();
            assert!(servers.len() <= 1, "shard {s} served by {servers:?}");
        }
    }

    /// Who serves each shard (members in `among`), asserting exactly one.
    pub fn servers(&self, among: &BTreeSet<&str>) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        for s in 0..self.cfg.shards {
            let who: Vec<&String> = self
                .tables
                .iter()
                .filter(|(id, t)| {
                    among.contains(id.as_str()) && matches!(t.state(s), ShardState::Serving { .. })
                })
                .map(|(id, _)| id)
                .collect();
            assert_eq!(who.len(), 1, "shard {s} served by {who:?}");
            out.insert(s, who[0].clone());
        }
        out
    }

    fn fingerprint(&self) -> Vec<(String, String, Option<String>, Vec<ShardState>)> {
        self.tables
            .iter()
            .map(|(id, t)| {
                let states = (0..self.cfg.shards).map(|s| t.state(s)).collect();
                (id.clone(), t.epoch_tag(), t.settled_tag(), states)
            })
            .collect()
    }
}
