//! The in-memory state of one shard and the pure rules that change it.
//!
//! `decide` turns a command into either the remembered outcome of its op id or
//! a new event; `apply` folds an event into the state. Both the live path and
//! the log replay use `apply`, so a reloaded shard is the same state.

use std::collections::HashMap;

use crate::event::{Event, Outcome};
use crate::model::MAX_BALANCE;

/// A write asked of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Add `amount` to `account`.
    Deposit {
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
        /// Amount in cents.
        amount: u64,
    },
    /// Take `amount` from `account` unless that would overdraw it.
    Withdraw {
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
        /// Amount in cents.
        amount: u64,
    },
    /// Make sure `op` on `account` is never applied (no-op if it already has an answer).
    Cancel {
        /// Account id.
        account: String,
        /// Operation id.
        op: String,
    },
}

/// What `decide` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The op id already has an outcome, written as event number `seq`.
    Known {
        /// The remembered outcome.
        outcome: Outcome,
        /// Sequence number of the event that recorded it (wait for it to be durable).
        seq: u64,
    },
    /// A new event to append; `outcome` is its answer.
    New {
        /// The event to append and apply.
        event: Event,
        /// The answer once the event is durable.
        outcome: Outcome,
    },
}

/// Replay found an event that does not fit the state: the log is corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistent(pub String);

/// Balances and op-id answers of one shard.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Balance per account in cents; absent means 0.
    balances: HashMap<String, u64>,
    /// Outcome per (account, op id), with the sequence number of its event.
    ops: HashMap<(String, String), (Outcome, u64)>,
}

// === impl Ledger ===

impl Ledger {
    /// Balance of `account` (0 if never seen).
    pub fn balance(&self, account: &str) -> u64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Number of accounts with a recorded balance (for tests and logs).
    pub fn accounts(&self) -> usize {
        self.balances.len()
    }

    /// Decides what `cmd` does, owned by term `owner`, without changing state.
    pub fn decide(&self, owner: &str, cmd: &Command) -> Decision {
        let (account, op) = match cmd {
            Command::Deposit { account, op, .. }
            | Command::Withdraw { account, op, .. }
            | Command::Cancel { account, op } => (account, op),
        };
        if let Some((outcome, seq)) = self.ops.get(&(account.clone(), op.clone())) {
            return Decision::Known {
                outcome: outcome.clone(),
                seq: *seq,
            };
        }
        let owner = owner.to_string();
        let (account, op) = (account.clone(), op.clone());
        let current = self.balance(&account);
        match cmd {
            Command::Deposit { amount, .. } => {
                match current.checked_add(*amount).filter(|b| *b <= MAX_BALANCE) {
                    Some(balance) => Decision::New {
                        event: Event::Deposit {
                            owner,
                            account,
                            op,
                            amount: *amount,
                            balance,
                        },
                        outcome: Outcome::Applied { balance },
                    },
                    None => rejected(owner, account, op, "balance-limit"),
                }
            }
            Command::Withdraw { amount, .. } => match current.checked_sub(*amount) {
                Some(balance) => Decision::New {
                    event: Event::Withdraw {
                        owner,
                        account,
                        op,
                        amount: *amount,
                        balance,
                    },
                    outcome: Outcome::Applied { balance },
                },
                None => rejected(owner, account, op, "insufficient-funds"),
            },
            Command::Cancel { .. } => Decision::New {
                event: Event::Cancelled { owner, account, op },
                outcome: Outcome::Cancelled,
            },
        }
    }

    /// Folds event number `seq` into the state; checks recorded balances.
    pub fn apply(&mut self, event: &Event, seq: u64) -> Result<(), Inconsistent> {
        match event {
            Event::Acquire { .. } => Ok(()),
            Event::Deposit {
                account,
                op,
                amount,
                balance,
                ..
            } => {
                let expect = self.balance(account).checked_add(*amount);
                self.set(account, op, expect, *balance, seq)
            }
            Event::Withdraw {
                account,
                op,
                amount,
                balance,
                ..
            } => {
                let expect = self.balance(account).checked_sub(*amount);
                self.set(account, op, expect, *balance, seq)
            }
            Event::Rejected {
                account, op, error, ..
            } => {
                let outcome = Outcome::Rejected {
                    error: error.clone(),
                };
                self.remember(account, op, outcome, seq)
            }
            Event::Cancelled { account, op, .. } => {
                self.remember(account, op, Outcome::Cancelled, seq)
            }
        }
    }

    fn set(
        &mut self,
        account: &str,
        op: &str,
        expect: Option<u64>,
        balance: u64,
        seq: u64,
    ) -> Result<(), Inconsistent> {
        if expect != Some(balance) {
            return Err(Inconsistent(format!(
                "account {account} op {op}: recorded balance {balance} does not follow from {}",
                self.balance(account)
            )));
        }
        self.remember(account, op, Outcome::Applied { balance }, seq)?;
        self.balances.insert(account.to_string(), balance);
        Ok(())
    }

    fn remember(
        &mut self,
        account: &str,
        op: &str,
        outcome: Outcome,
        seq: u64,
    ) -> Result<(), Inconsistent> {
        let key = (account.to_string(), op.to_string());
        if self.ops.contains_key(&key) {
            return Err(Inconsistent(format!(
                "account {account} op {op} recorded twice"
            )));
        }
        self.ops.insert(key, (outcome, seq));
        Ok(())
    }
}

/// A new `Rejected` event and its answer.
fn rejected(owner: String, account: String, op: String, error: &str) -> Decision {
    Decision::New {
        event: Event::Rejected {
            owner,
            account,
            op,
            error: error.to_string(),
        },
        outcome: Outcome::Rejected {
            error: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(l: &mut Ledger, cmd: Command, seq: u64) -> Outcome {
        match l.decide("p/1", &cmd) {
            Decision::Known { outcome, .. } => outcome,
            Decision::New { event, outcome } => {
                l.apply(&event, seq).unwrap();
                outcome
            }
        }
    }

    fn dep(op: &str, amount: u64) -> Command {
        Command::Deposit {
            account: "a".into(),
            op: op.into(),
            amount,
        }
    }

    fn wd(op: &str, amount: u64) -> Command {
        Command::Withdraw {
            account: "a".into(),
            op: op.into(),
            amount,
        }
    }

    #[test]
    fn same_op_returns_first_answer() {
        let mut l = Ledger::default();
        assert_eq!(
            run(&mut l, dep("d1", 100), 1),
            Outcome::Applied { balance: 100 }
        );
        assert_eq!(
            run(&mut l, dep("d1", 100), 2),
            Outcome::Applied { balance: 100 }
        );
        assert_eq!(l.balance("a"), 100);
        assert_eq!(
            run(&mut l, wd("w1", 70), 3),
            Outcome::Applied { balance: 30 }
        );
        assert_eq!(
            run(&mut l, wd("w1", 70), 4),
            Outcome::Applied { balance: 30 }
        );
        assert_eq!(l.balance("a"), 30);
    }

    #[test]
    fn overdraft_is_rejected_and_remembered() {
        let mut l = Ledger::default();
        let no = Outcome::Rejected {
            error: "insufficient-funds".into(),
        };
        assert_eq!(run(&mut l, wd("w", 5), 1), no);
        run(&mut l, dep("d", 10), 2);
        // The op keeps its first answer even though the funds are there now.
        assert_eq!(run(&mut l, wd("w", 5), 3), no);
        assert_eq!(l.balance("a"), 10);
    }

    #[test]
    fn cancel_blocks_a_later_deposit_but_not_an_earlier_one() {
        let mut l = Ledger::default();
        let cancel = Command::Cancel {
            account: "a".into(),
            op: "t:d".into(),
        };
        assert_eq!(run(&mut l, cancel.clone(), 1), Outcome::Cancelled);
        assert_eq!(run(&mut l, dep("t:d", 9), 2), Outcome::Cancelled);
        assert_eq!(l.balance("a"), 0);
        run(&mut l, dep("u:d", 9), 3);
        let cancel_u = Command::Cancel {
            account: "a".into(),
            op: "u:d".into(),
        };
        assert_eq!(run(&mut l, cancel_u, 4), Outcome::Applied { balance: 9 });
    }

    #[test]
    fn replay_detects_inconsistent_balance() {
        let mut l = Ledger::default();
        let bad = Event::Deposit {
            owner: "p/1".into(),
            account: "a".into(),
            op: "x".into(),
            amount: 5,
            balance: 6,
        };
        assert!(l.apply(&bad, 1).is_err());
    }

    #[test]
    fn deposit_beyond_ceiling_is_rejected() {
        let mut l = Ledger::default();
        run(&mut l, dep("a", MAX_BALANCE), 1);
        assert_eq!(
            run(&mut l, dep("b", 1), 2),
            Outcome::Rejected {
                error: "balance-limit".into()
            }
        );
    }
}
