//! How the transfer saga reaches accounts: through the outbound sidecar, or
//! in-process when the app runs standalone (it then holds every shard).

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

use crate::bank::{Bank, BankError, Route};
use crate::event::Outcome;
use crate::http::client::{HttpClient, Reply, SendError};
use crate::http::headers;

/// One account operation the saga performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /accounts/{id}/deposit`.
    Deposit,
    /// `POST /accounts/{id}/withdraw`.
    Withdraw,
    /// `POST /accounts/{id}/cancel`.
    Cancel,
}

/// What a step got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepReply {
    /// The owner answered with the op's recorded outcome: final.
    Final(Outcome),
    /// The request is invalid; retrying cannot help.
    Refused(String),
    /// Nothing definite (timeout, connection failure, 5xx, mesh error, stale
    /// epoch): the op may or may not have run; retry with the same op id.
    Unknown(String),
}

/// The saga's way to reach accounts.
#[derive(Debug, Clone)]
pub enum Accounts {
    /// Through the outbound sidecar at `base` (e.g. `http://127.0.0.1:7400`).
    Mesh {
        /// Outbound sidecar base URL.
        base: String,
        /// Pooled client (boxed: it is large next to the other variant).
        client: Box<HttpClient>,
    },
    /// Straight into this process's bank (standalone mode).
    Local(Arc<Bank>),
}

// === impl Accounts ===

impl Accounts {
    /// A mesh client whose calls each time out after `timeout`.
    pub fn mesh(base: &str, timeout: Duration) -> Self {
        Accounts::Mesh {
            base: base.trim_end_matches('/').to_string(),
            client: Box::new(HttpClient::new(timeout)),
        }
    }

    /// Runs `action` on `account` with op id `op` (amount ignored by cancel).
    pub async fn call(&self, action: Action, account: &str, op: &str, amount: u64) -> StepReply {
        match self {
            Accounts::Local(bank) => local(bank, action, account, op, amount).await,
            Accounts::Mesh { base, client } => {
                let path = match action {
                    Action::Deposit => "deposit",
                    Action::Withdraw => "withdraw",
                    Action::Cancel => "cancel",
                };
                let uri = format!("{base}/accounts/{account}/{path}");
                let body = match action {
                    Action::Cancel => serde_json::json!({ "op": op }),
                    _ => serde_json::json!({ "amount": amount, "op": op }),
                };
                let hdrs = [
                    (headers::SERVICE, headers::BANK_SERVICE.to_string()),
                    (headers::KEY, account.to_string()),
                    (headers::IDEMPOTENT, "true".to_string()),
                ];
                classify(client.send(Method::POST, &uri, &hdrs, Some(&body)).await)
            }
        }
    }
}

async fn local(bank: &Bank, action: Action, account: &str, op: &str, amount: u64) -> StepReply {
    let route = Route::default();
    let result = match action {
        Action::Deposit => bank.deposit(route, account, op, amount).await,
        Action::Withdraw => bank.withdraw(route, account, op, amount).await,
        Action::Cancel => bank.cancel(route, account, op).await,
    };
    match result {
        Ok(outcome) => StepReply::Final(outcome),
        Err(BankError::BadRequest(msg)) => StepReply::Refused(msg),
        Err(e) => StepReply::Unknown(format!("{e:?}")),
    }
}

/// Sorts an HTTP answer of an account write into final / refused / unknown.
pub fn classify(reply: Result<Reply, SendError>) -> StepReply {
    let reply = match reply {
        Ok(r) => r,
        Err(SendError::Timeout) => return StepReply::Unknown("timeout".to_string()),
        Err(SendError::Connect(e) | SendError::Transport(e)) => return StepReply::Unknown(e),
    };
    if let Some(reason) = reply.mesh_error() {
        return StepReply::Unknown(format!("mesh: {reason}"));
    }
    match reply.status.as_u16() {
        200 => match reply.json().get("balance").and_then(|b| b.as_u64()) {
            Some(balance) => StepReply::Final(Outcome::Applied { balance }),
            None => StepReply::Unknown("200 without a balance".to_string()),
        },
        409 => match reply.error().as_deref() {
            Some("cancelled") => StepReply::Final(Outcome::Cancelled),
            Some(e @ ("insufficient-funds" | "balance-limit")) => {
                StepReply::Final(Outcome::Rejected {
                    error: e.to_string(),
                })
            }
            other => StepReply::Unknown(format!("409 {}", other.unwrap_or("?"))),
        },
        400 => StepReply::Refused(reply.error().unwrap_or_else(|| "bad-request".to_string())),
        status => StepReply::Unknown(format!("status {status}")),
    }
}
