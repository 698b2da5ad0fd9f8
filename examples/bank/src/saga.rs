//! `POST /transfers`: a saga of account operations through the mesh.
//!
//! Steps, each with an op id derived from the transfer's: withdraw from
//! `from` (`<op>:w`), deposit into `to` (`<op>:d`). If the deposit does not
//! succeed, the saga first cancels `<op>:d` at `to` — so a deposit still in
//! flight somewhere can never land later — and only if the cancel confirms
//! it compensates `from` with a deposit (`<op>:c`). Every step is idempotent,
//! so re-sending the same transfer (e.g. after a timeout) resumes the saga
//! and ends in the same state: the whole transfer is safe to retry.
//!
//! When a step stays unknown after its bounded retries, the saga answers
//! 503 `transfer-pending` and changes nothing more; the client re-sends the
//! same op to finish it.

use std::time::Duration;

use tokio::time::Instant;

use crate::accounts::{Accounts, Action, StepReply};
use crate::event::Outcome;
use crate::model::TransferRequest;

/// Attempts per step while its answer is unknown.
const ATTEMPTS: u32 = 4;
/// First backoff between attempts; doubles each time.
const BACKOFF: Duration = Duration::from_millis(25);
/// Time budget of one run of the saga, kept under the mesh's default 10 s
/// request deadline so the caller gets the saga's own answer, not a timeout.
pub const SAGA_BUDGET: Duration = Duration::from_secs(8);

/// How a transfer ended, with its HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferResult {
    /// Money moved: 200 `{"status": "done"}`.
    Done,
    /// `from` lacks the funds: 409 `insufficient-funds`; nothing moved.
    InsufficientFunds,
    /// Deposit failed, withdrawal compensated: 409 `transfer-failed`; nothing moved.
    Compensated(String),
    /// A step refused the request: 400.
    Refused(String),
    /// Not finished; re-send the same op: 503 `transfer-pending`.
    Pending(String),
}

// === impl TransferResult ===

impl TransferResult {
    /// HTTP status and JSON body of the result.
    pub fn to_http(&self) -> (u16, serde_json::Value) {
        use serde_json::json;
        match self {
            TransferResult::Done => (200, json!({ "status": "done" })),
            TransferResult::InsufficientFunds => (409, json!({ "error": "insufficient-funds" })),
            TransferResult::Compensated(why) => {
                (409, json!({ "error": "transfer-failed", "message": why }))
            }
            TransferResult::Refused(why) => {
                (400, json!({ "error": "bad-request", "message": why }))
            }
            TransferResult::Pending(why) => {
                (503, json!({ "error": "transfer-pending", "message": why }))
            }
        }
    }
}

/// Runs (or resumes) the transfer saga for a validated request.
pub async fn transfer(accounts: &Accounts, t: &TransferRequest) -> TransferResult {
    let deadline = Instant::now() + SAGA_BUDGET;
    let (w, d, c) = (
        format!("{}:w", t.op),
        format!("{}:d", t.op),
        format!("{}:c", t.op),
    );
    match step(accounts, deadline, Action::Withdraw, &t.from, &w, t.amount).await {
        StepReply::Final(Outcome::Applied { .. }) => {}
        StepReply::Final(Outcome::Rejected { error }) if error == "insufficient-funds" => {
            return TransferResult::InsufficientFunds
        }
        StepReply::Final(other) => {
            return TransferResult::Refused(format!("withdrawal refused: {other:?}"))
        }
        StepReply::Refused(why) => return TransferResult::Refused(why),
        StepReply::Unknown(why) => return TransferResult::Pending(format!("withdrawal: {why}")),
    }
    let why = match step(accounts, deadline, Action::Deposit, &t.to, &d, t.amount).await {
        StepReply::Final(Outcome::Applied { .. }) => return TransferResult::Done,
        StepReply::Final(other) => format!("deposit refused: {other:?}"),
        StepReply::Refused(why) => format!("deposit refused: {why}"),
        StepReply::Unknown(why) => format!("deposit failed: {why}"),
    };
    // Make sure the deposit can never land, or learn that it already did.
    match step(accounts, deadline, Action::Cancel, &t.to, &d, 0).await {
        StepReply::Final(Outcome::Applied { .. }) => return TransferResult::Done,
        StepReply::Final(_) => {}
        StepReply::Refused(e) | StepReply::Unknown(e) => {
            return TransferResult::Pending(format!("{why}; cancel: {e}"))
        }
    }
    match step(accounts, deadline, Action::Deposit, &t.from, &c, t.amount).await {
        StepReply::Final(Outcome::Applied { .. }) => TransferResult::Compensated(why),
        StepReply::Final(other) => {
            TransferResult::Pending(format!("{why}; compensation refused: {other:?}"))
        }
        StepReply::Refused(e) | StepReply::Unknown(e) => {
            TransferResult::Pending(format!("{why}; compensation: {e}"))
        }
    }
}

/// One step with bounded retries while the answer is unknown, within the saga's budget.
async fn step(
    accounts: &Accounts,
    deadline: Instant,
    action: Action,
    account: &str,
    op: &str,
    amount: u64,
) -> StepReply {
    let mut backoff = BACKOFF;
    let mut attempt = 1;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = accounts.call(action, account, op, amount);
        let reply = match tokio::time::timeout(left, call).await {
            Ok(reply) => reply,
            Err(_) => return StepReply::Unknown("saga time budget spent".to_string()),
        };
        if !matches!(reply, StepReply::Unknown(_))
            || attempt >= ATTEMPTS
            || Instant::now() + backoff >= deadline
        {
            return reply;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

#[cfg(test)]
#[path = "saga_tests.rs"]
mod tests;
