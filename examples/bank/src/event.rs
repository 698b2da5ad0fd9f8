//! The events of a shard's log and the answers they stand for.
//!
//! One event is one JSON line. Every data event names the owner term that
//! wrote it (`owner`), so a replay can ignore lines a superseded owner
//! appended after a newer owner took the shard (see `journal`).

use serde::{Deserialize, Serialize};

/// One line of a shard's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    /// A pod took the shard; later lines count only if they carry this owner.
    Acquire {
        /// Owner term token: `<pod>/<nonce>`, unique per acquisition.
        owner: String,
        /// Ownership epoch the sidecar acquired at (informational).
        epoch: u64,
    },
    /// Money added to an account.
    Deposit {
        /// Owner term that wrote the line.
        owner: String,
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
        /// Amount in cents.
        amount: u64,
        /// Balance after the deposit (checked on replay).
        balance: u64,
    },
    /// Money taken from an account.
    Withdraw {
        /// Owner term that wrote the line.
        owner: String,
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
        /// Amount in cents.
        amount: u64,
        /// Balance after the withdrawal (checked on replay).
        balance: u64,
    },
    /// A write refused for a business reason; remembered so the op keeps its answer.
    Rejected {
        /// Owner term that wrote the line.
        owner: String,
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
        /// Reason, e.g. `insufficient-funds`.
        error: String,
    },
    /// An op id the transfer saga gave up on: a later write with it is refused.
    Cancelled {
        /// Owner term that wrote the line.
        owner: String,
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
    },
}

/// What an operation ended with; the same op id always gets the same outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; the account's balance right after it.
    Applied {
        /// Balance after the operation, in cents.
        balance: u64,
    },
    /// Refused for a business reason (answered 409).
    Rejected {
        /// Reason, e.g. `insufficient-funds`.
        error: String,
    },
    /// Cancelled by a transfer saga before it was applied (answered 409 `cancelled`).
    Cancelled,
}

impl Event {
    /// The owner term of a data event (`None` for an `Acquire` marker).
    pub fn data_owner(&self) -> Option<&str> {
        match self {
            Event::Acquire { .. } => None,
            Event::Deposit { owner, .. }
            | Event::Withdraw { owner, .. }
            | Event::Rejected { owner, .. }
            | Event::Cancelled { owner, .. } => Some(owner),
        }
    }
}

impl Outcome {
    /// HTTP status and JSON body of this outcome as the app answers it.
    pub fn to_http(&self) -> (u16, serde_json::Value) {
        match self {
            Outcome::Applied { balance } => (200, serde_json::json!({ "balance": balance })),
            Outcome::Rejected { error } => (409, serde_json::json!({ "error": error })),
            Outcome::Cancelled => (409, serde_json::json!({ "error": "cancelled" })),
        }
    }
}
