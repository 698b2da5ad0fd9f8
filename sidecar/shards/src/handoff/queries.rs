//! Read-only questions the sidecar asks the shard table: for `/ready`,
//! `/debug/shards`, metrics, gossip tags and timers.

use std::time::Instant;

use super::{Call, ShardState, ShardTable, State, Step};
use crate::{format_view_id, MemberId};

impl ShardTable {
    /// The shard's state here.
    pub fn state(&self, shard: u32) -> ShardState {
        self.slots
            .get(shard as usize)
            .map_or(ShardState::NotOwned, |s| s.public())
    }

    /// The shard's owner in the current view.
    pub fn owner(&self, shard: u32) -> Option<&MemberId> {
        self.assignment.as_ref()?.owner(shard)
    }

    /// This member's id.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// Number of shards of the service.
    pub fn shards(&self) -> u32 {
        self.cfg.shards
    }

    /// Shards served here (`shardmesh_shards_owned`).
    pub fn owned(&self) -> u32 {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, State::Serving { .. }))
            .count() as u32
    }

    /// Whether keep-majority lets this member serve.
    pub fn has_majority(&self) -> bool {
        self.majority.has_majority()
    }

    /// `/ready`: a view arrived, a majority is reached, and every shard this
    /// member owns is served.
    pub fn is_ready(&self) -> bool {
        let Some(a) = &self.assignment else {
            return false;
        };
        self.has_majority()
            && (0..self.cfg.shards).all(|s| {
                a.owner(s) != Some(&self.me) || matches!(self.state(s), ShardState::Serving { .. })
            })
    }

    /// After [`Self::leave`]: nothing is held any more; safe to leave gossip.
    pub fn is_released(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.state, State::NotOwned))
    }

    /// Value of [`crate::EPOCH_TAG`] to gossip: the largest epoch seen.
    pub fn epoch_tag(&self) -> String {
        self.max_epoch.to_string()
    }

    /// Value of [`crate::SETTLED_TAG`] to gossip, or `None` to remove it:
    /// set while this member has a majority and holds no shard that the
    /// current view gives to someone else — nothing being released, and
    /// (when leaving) nothing still served while the others catch up. A
    /// leaving member that kept advertising it let a new owner pass the
    /// barrier while the shard was still served here.
    pub fn settled_tag(&self) -> Option<String> {
        let assignment = self.assignment.as_ref()?;
        let holds_foreign = (0u32..)
            .zip(self.slots.iter())
            .any(|(shard, s)| match s.state {
                State::Releasing { .. } => true,
                State::Serving { .. } => assignment.owner(shard) != Some(&self.me),
                _ => false,
            });
        (self.has_majority() && !holds_foreign).then(|| format_view_id(self.view))
    }

    /// The earliest time [`Self::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hold = self.cfg.hold_timeout;
        let slots = self.slots.iter().filter_map(|s| match &s.state {
            State::Acquiring { since, call, .. } => {
                let held = (s.held > 0).then(|| *since + hold);
                let retry = match call {
                    Call::RetryAt { at, .. } => Some(*at),
                    _ => None,
                };
                held.into_iter().chain(retry).min()
            }
            State::Releasing {
                step: Step::RetryAt { at },
                ..
            } => Some(*at),
            _ => None,
        });
        let leave = self
            .leaving
            .filter(|_| self.leave_pending())
            .map(|t| t + self.cfg.leave_wait);
        slots
            .chain(self.majority.next_deadline())
            .chain(leave)
            .chain(self.margin_deadline())
            .min()
    }
}
