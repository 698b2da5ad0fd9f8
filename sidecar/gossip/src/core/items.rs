//! Custom broadcasts riding on foca packets: metadata, application messages
//! and Lifeguard suspicion confirmations. The handler decides what is new
//! (and so worth re-disseminating); the core drains what it accepted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::id::NodeId;
use crate::wire::{self, Item, MetaRecord, MAX_APP_BROADCAST};

/// Application sequence numbers remembered per origin (dedup window).
const APP_SEEN_PER_ORIGIN: usize = 256;
/// Bound on the confirmation dedup set; cleared when full.
const MAX_CONFIRMS_SEEN: usize = 8192;
/// Bound on undelivered application messages.
const MAX_APP_INBOX: usize = 4096;
/// Most members whose metadata is kept; far above any mesh we run.
pub(crate) const MAX_MEMBERS: usize = 16_384;

/// Tables shared by the foca-owned handler and the core (one lock, never contended:
/// both run on the core's task).
#[derive(Default)]
pub(crate) struct Tables {
    /// Our own address: our own messages are not delivered back to us.
    pub(crate) local: Option<SocketAddr>,
    /// Newest metadata per member address.
    pub(crate) metas: HashMap<SocketAddr, MetaRecord>,
    /// Set when `metas` changed.
    pub(crate) metas_dirty: bool,
    /// Members whose newest metadata advertises `watch::CHECKS_TAG`; kept
    /// with `metas` because the ring watch asks about every member each period.
    pub(crate) answers_checks: HashSet<NodeId>,
    /// Recent application sequence numbers per origin.
    app_seen: HashMap<SocketAddr, (u64, VecDeque<u64>)>,
    /// Accepted application messages, drained by the core.
    pub(crate) app_inbox: Vec<(NodeId, Vec<u8>)>,
    /// Confirmations already seen.
    confirms_seen: HashSet<(SocketAddr, u16, SocketAddr)>,
    /// Accepted confirmations (target, incarnation, from), drained by the core.
    pub(crate) confirm_inbox: Vec<(NodeId, u16, SocketAddr)>,
}

/// The [`foca::BroadcastHandler`] given to foca.
#[derive(Clone, Default)]
pub(crate) struct Handler(pub(crate) Arc<Mutex<Tables>>);

/// Dedup/replacement key of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKey {
    Meta {
        addr: SocketAddr,
        generation: u64,
        version: u64,
    },
    Other(Item),
}

/// A broadcast item that could not be accepted.
#[derive(Debug, thiserror::Error)]
#[error("bad broadcast item")]
pub(crate) struct BadItem;

// === impl Handler ===

impl Handler {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half-updated
        // in a way that matters more than stopping gossip would.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl foca::BroadcastHandler<NodeId> for Handler {
    type Key = ItemKey;
    type Error = BadItem;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<ItemKey>, BadItem> {
        let item = wire::decode_item(data).map_err(|_| BadItem)?;
        let mut t = self.lock();
        Ok(t.accept(item))
    }
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Meta {
                    addr,
                    generation,
                    version,
                },
                Self::Meta {
                    addr: a2,
                    generation: g2,
                    version: v2,
                },
            ) => addr == a2 && (generation, version) >= (g2, v2),
            (a, b) => a == b,
        }
    }
}

// === impl Tables ===

impl Tables {
    /// Records an item; `Some(key)` when it is new and should spread further.
    pub(crate) fn accept(&mut self, item: Item) -> Option<ItemKey> {
        match item {
            Item::Meta(rec) => {
                if rec.meta.validate().is_err() {
                    return None;
                }
                let key = ItemKey::Meta {
                    addr: rec.id.addr,
                    generation: rec.id.generation,
                    version: rec.version,
                };
                self.merge_meta(rec).then_some(key)
            }
            Item::App { origin, seq, data } => {
                if data.len() > MAX_APP_BROADCAST || self.app_inbox.len() >= MAX_APP_INBOX {
                    return None;
                }
                let (generation, seen) = self
                    .app_seen
                    .entry(origin.addr)
                    .or_insert_with(|| (origin.generation, VecDeque::new()));
                if origin.generation < *generation {
                    return None;
                }
                if origin.generation > *generation {
                    *generation = origin.generation;
                    seen.clear();
                }
                if seen.contains(&seq) {
                    return None;
                }
                if seen.len() >= APP_SEEN_PER_ORIGIN {
                    seen.pop_front();
                }
                seen.push_back(seq);
                let item = Item::App {
                    origin,
                    seq,
                    data: data.clone(),
                };
                if self.local != Some(origin.addr) {
                    self.app_inbox.push((origin, data));
                }
                Some(ItemKey::Other(item))
            }
            Item::Confirm {
                target,
                incarnation,
                from,
            } => {
                if self.confirms_seen.len() >= MAX_CONFIRMS_SEEN {
                    self.confirms_seen.clear();
                }
                if !self.confirms_seen.insert((target.addr, incarnation, from)) {
                    return None;
                }
                if self.local != Some(from) {
                    self.confirm_inbox.push((target, incarnation, from));
                }
                Some(ItemKey::Other(Item::Confirm {
                    target,
                    incarnation,
                    from,
                }))
            }
        }
    }

    /// Keeps the newest record per address; true when it changed the table.
    pub(crate) fn merge_meta(&mut self, rec: MetaRecord) -> bool {
        let newer = match self.metas.get(&rec.id.addr) {
            Some(old) => (rec.id.generation, rec.version) > (old.id.generation, old.version),
            None => self.metas.len() < MAX_MEMBERS,
        };
        if newer {
            if rec.meta.tags.contains_key(super::watch::CHECKS_TAG) {
                self.answers_checks.insert(rec.id);
            }
            if let Some(old) = self.metas.insert(rec.id.addr, rec) {
                let same_and_capable = self.metas.get(&old.id.addr).is_some_and(|new| {
                    new.id == old.id && new.meta.tags.contains_key(super::watch::CHECKS_TAG)
                });
                if !same_and_capable {
                    self.answers_checks.remove(&old.id);
                }
            }
            self.metas_dirty = true;
        }
        newer
    }
}
