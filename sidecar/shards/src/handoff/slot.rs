//! Per-shard bookkeeping of the shard table (internal).

use std::time::Instant;

use crate::{MemberId, ShardState};

/// One shard on this member.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    /// Where the shard is in its life cycle here.
    pub(super) state: State,
    /// Requests admitted to wait while the shard is acquired.
    pub(super) held: u32,
    /// The latest release notice heard for the shard: (from, epoch).
    pub(super) notice: Option<(MemberId, u64)>,
}

/// The internal state; [`ShardState`] is its public face.
#[derive(Clone, Debug)]
pub(super) enum State {
    NotOwned,
    Acquiring {
        since: Instant,
        wait: Wait,
        call: Call,
    },
    Serving {
        epoch: u64,
    },
    Releasing {
        epoch: u64,
        step: Step,
    },
}

/// What an acquisition waits for before calling the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// A release notice from this previous owner, its death or leave, or
    /// the barrier.
    Owner(MemberId),
    /// Every other owning member settled on our view (nobody else holds it).
    Barrier,
}

/// The app acquire call of an acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// Not called yet: still waiting.
    Idle,
    /// Called with this epoch; awaiting `callback_done`.
    InFlight { epoch: u64 },
    /// Failed; call again with this epoch at `at`.
    RetryAt { epoch: u64, at: Instant },
}

/// Progress of a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// An acquire call is still in flight; release once it returns.
    AfterAcquire,
    /// Waiting for in-flight requests to finish (`drained`).
    Draining,
    /// App release called; awaiting `callback_done`.
    InFlight,
    /// App release failed; call again at `at`.
    RetryAt { at: Instant },
}

impl Slot {
    pub(super) fn new() -> Self {
        Self {
            state: State::NotOwned,
            held: 0,
            notice: None,
        }
    }

    /// The public view of the state.
    pub(super) fn public(&self) -> ShardState {
        match &self.state {
            State::NotOwned => ShardState::NotOwned,
            State::Acquiring { since, call, .. } => ShardState::Acquiring {
                since: *since,
                epoch: match call {
                    Call::Idle => None,
                    Call::InFlight { epoch } | Call::RetryAt { epoch, .. } => Some(*epoch),
                },
            },
            State::Serving { epoch } => ShardState::Serving { epoch: *epoch },
            State::Releasing { epoch, .. } => ShardState::Releasing { epoch: *epoch },
        }
    }
}
